"""Which level of a generator carries which factor: per level and sigma, how often each factor differs between an
anchor and its positive (that level moved by sigma, the `random` views' noise). It is mlvgm.view_audit's
sweep, read by the factor classifier (mlvgm.zoo.factor_classifier.ReadFactors) where the generator has no
ground truth; on the shapes world it runs both ways, so what the classifier's own errors add is measured.

A level is **shape-selective** (docs/embedded.md, fixed before the runs) when at some sigma of the grid its
shape flip rate is at least SELECTIVE_SHAPE and every other factor's flip rate at most half of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mlvgm.generators.base import level_label
from mlvgm.plots import save_png
from mlvgm.view_audit import make_anchors, sweep

SIGMAS = (0.25, 0.5, 1.0, 2.0, 4.0)
SELECTIVE_SHAPE = 0.25
SELECTIVE_RATIO = 0.5


def flip_rates(g, *, sigmas: Sequence[float] = SIGMAS, pairs: int = 512, truncation: float = 2.0,
               seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """One row per (level, sigma): `flip_<factor>` for every factor g declares (g must be Labelled)."""
    anchors = make_anchors(g, pairs, truncation=truncation, seed=seed, net=None)
    units = {level_label(g, i): [i] for i in range(len(g.level_dims))}
    table = sweep(g, anchors, units, sigmas, t=truncation, seed=seed, net=None)
    keep = ["level", "sigma", "pixel_change", *sorted(c for c in table.columns if c.startswith("flip_"))]
    return table[keep]


def shape_selective(table: pd.DataFrame) -> dict[str, bool]:
    """Per level: whether some sigma has flip_shape >= SELECTIVE_SHAPE and every other flip <= half of it."""
    others = [c for c in table.columns if c.startswith("flip_") and c != "flip_shape"]
    verdict = {}
    for level, rows in table.groupby("level", sort=False):
        others_low = rows[others].le(SELECTIVE_RATIO * rows["flip_shape"], axis=0).all(axis=1)
        hits = (rows["flip_shape"] >= SELECTIVE_SHAPE) & others_low
        verdict[str(level)] = bool(hits.any())
    return verdict


def plot_flips(tables: dict[str, pd.DataFrame], path: Path) -> None:
    """A row of panels per generator (one panel per level): each factor's flip rate against sigma."""
    from matplotlib.figure import Figure

    columns = max(t["level"].nunique() for t in tables.values())
    fig = Figure(figsize=(2.6 * columns, 2.4 * len(tables) + 0.4))
    axes = fig.subplots(len(tables), columns, squeeze=False, sharey=True)
    for row, (title, table) in enumerate(tables.items()):
        levels = list(dict.fromkeys(table["level"]))
        for col in range(columns):
            ax = axes[row][col]
            if col >= len(levels):
                ax.axis("off")
                continue
            rows = table[table["level"] == levels[col]]
            for factor in sorted(c for c in table.columns if c.startswith("flip_")):
                ax.plot(rows["sigma"], rows[factor], "o-", markersize=3, label=factor[5:])
            ax.set_xscale("log", base=2)
            ax.set_ylim(0, 1)
            ax.set_title(f"{title}: {levels[col]}", fontsize=8)
            ax.tick_params(labelsize=7)
            if col == 0:
                ax.set_ylabel("factor changed (share of pairs)", fontsize=7)
            if row == len(tables) - 1:
                ax.set_xlabel("sigma", fontsize=7)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    save_png(fig, path)
