"""Which levels fix which factor of a real image: decode held-out real images from the posterior means of z1..zk
and fresh prior draws below, for k = 0 (a plain sample) to n (the reconstruction), and ask the real-image
classifier how often each factor still reads as the original's. A factor that the first k levels fix agrees at k;
one that only a deeper level knows stays at the chance agreement of k = 0 until that level's turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from mlvgm.plots import save_png
from mlvgm.zoo.factor_classifier import FactorClassifier

SHOWN = 8  # originals in the figure's grid


@torch.no_grad()
def posterior_depth(vae, x: Tensor, classifier: FactorClassifier,
                    eps: Sequence[Tensor]) -> tuple[dict[str, list[float]], Tensor]:  # fmt: skip
    """vae: a HierarchicalVAE; x (N, 3, R, R) real images; eps: a prior draw per image and level. Returns, per
    factor, the share of images whose classifier reading at k = 0..n equals the original's, and the grid
    (n + 2, SHOWN, 3, R, R): the originals, then a row per k."""
    levels = len(vae.config.levels)
    original = {name: logits.argmax(1) for name, logits in classifier.logits(x.float()).items()}
    agreement: dict[str, list[float]] = {name: [] for name in original}
    rows = [x[:SHOWN].float()]
    for k in range(levels + 1):
        decoded = vae.partial(x, k, eps).float()
        for name, logits in classifier.logits(decoded).items():
            agreement[name].append(float((logits.argmax(1) == original[name]).float().mean()))
        rows.append(decoded[:SHOWN])
    return agreement, torch.stack(rows).cpu()


def plot_depth(grid: Tensor, agreement: dict[str, list[float]], level_names: Sequence[str], path: Path) -> None:
    """Left: the originals over their decodes at k = 0..n; right: each factor's agreement against k."""
    from matplotlib.figure import Figure

    n_rows = grid.shape[0]
    image = torch.cat([torch.cat(list(row), dim=-1) for row in grid], dim=-2).permute(1, 2, 0).clamp(0, 1).numpy()
    fig = Figure(figsize=(11, 4.6))
    left, right = fig.subplots(1, 2, width_ratios=[1.1, 1])
    left.imshow(image)
    side = grid.shape[-1]
    left.set_yticks([side * (r + 0.5) for r in range(n_rows)],
                    ["real", "k = 0", *[f"z1..z{k}" for k in range(1, n_rows - 1)]], fontsize=7)  # fmt: skip
    left.set_xticks([])
    left.set_title("posterior means for z1..zk, prior draws below", fontsize=9)
    ks = list(range(n_rows - 1))
    for name, values in agreement.items():
        right.plot(ks, values, marker="o", label=name)
    right.set_xticks(ks, ["prior only", *[f"+z{k} {level_names[k - 1]}" for k in ks[1:]]], fontsize=7, rotation=20)
    right.set_ylim(0, 1.02)
    right.set_ylabel("reads as the original's (share)")
    right.set_title("which levels fix each factor of a held-out real image", fontsize=9)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
