"""The training behind `python -m mlvgm.zoo.train` (the command checks the arguments before this module loads
torch): `train(config)` trains the embedded hierarchical VAE on fresh shapes-world batches, resumes a run
exactly, and writes the run folder and the shipped pair (embedded.safetensors + .json).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from mlvgm.checkpoint import load_checkpoint, save_checkpoint
from mlvgm.cli import resolve_device
from mlvgm.generators import load_generator
from mlvgm.generators.base import sample_anchors
from mlvgm.generators.embedded import save_weights
from mlvgm.generators.hvae import HierarchicalVAE, HVAEConfig
from mlvgm.io import atomic_write_text, make_output_dir
from mlvgm.plots import save_png
from mlvgm.progress import Progress, duration
from mlvgm.provenance import provenance, provenance_line
from mlvgm.runs import RECORD
from mlvgm.streams import Stream
from mlvgm.train_step import TrainStep, use_bf16
from mlvgm.zoo.configs import ZooTrainConfig, active_levels, learning_rate

_log = logging.getLogger("mlvgm.zoo.train")  # the command's name: its lines are the command's, as before the move


def hvae_config(config: ZooTrainConfig) -> HVAEConfig:
    """The VAE's architecture at the config's resolution (64 px adds a level of widths in front)."""
    widths = HVAEConfig().widths if config.resolution == 32 else ((64, 24), *HVAEConfig().widths)
    widths = tuple((r, max(8, round(c * config.width))) for r, c in widths)
    return HVAEConfig(resolution=config.resolution, widths=widths, levels=HVAEConfig().levels,
                      likelihood=config.likelihood, mixtures=config.mixtures, cells=config.cells,
                      sigma_x=config.sigma_x, groups=config.groups, position_bias=config.position_bias,
                      strided=config.strided)  # fmt: skip


class Trainee(torch.nn.Module):
    """What a checkpoint holds: the VAE and the moving average of its weights."""

    def __init__(self, config: HVAEConfig) -> None:
        super().__init__()
        self.vae = HierarchicalVAE(config)
        self.ema = copy.deepcopy(self.vae).requires_grad_(False)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        for e, p in zip(self.ema.parameters(), self.vae.parameters(), strict=True):
            e.lerp_(p, 1 - decay)


class VAEStep(TrainStep):
    """The shared training step on the VAE: its forward returns (loss, the VAE's outputs) at the KL weight set."""

    def __init__(self, vae: HierarchicalVAE, optimizer: torch.optim.Optimizer, *, amp: bool,
                 level_weights: Sequence[float] = (), free_nats: Sequence[float] = ()) -> None:  # fmt: skip
        super().__init__(self._forward, optimizer, amp=amp)
        self.vae, self.kl_weight, self.level_weights = vae, 1.0, tuple(level_weights) or None
        self.free_nats, self.active = tuple(free_nats) or None, None

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        result = self.vae(x, kl_weight=self.kl_weight, level_weights=self.level_weights, free_nats=self.free_nats,
                         active=self.active)  # fmt: skip
        return result["loss"], result


def images(world, stream: Stream, step: int, n: int, truncation: float) -> torch.Tensor:
    """Batch `step` of the shapes world: (n, 3, R, R) in [0, 1], a function of (stream's seed, step)."""
    with torch.no_grad():
        return world(sample_anchors(world, n, truncation=truncation, generator=stream.at(step)))


@torch.no_grad()
def held_out_kl(vae: HierarchicalVAE, world, config: ZooTrainConfig, device: torch.device) -> dict[str, object]:
    """-ELBO and reconstruction term (nats per dimension: under the continuous Gaussian likelihood they can be
    negative, under the 8-bit logistic mixture they cannot) and KL per level (nats per image), on images no
    training step saw."""
    stream = Stream(config.seed, purpose="zoo-eval")
    torch.manual_seed(config.seed)
    totals: dict[str, object] = {"elbo": 0.0, "nll": 0.0, "kl": torch.zeros(len(vae.config.levels))}
    batches = math.ceil(config.eval_images / config.batch_size)
    for b in range(batches):
        out = vae(images(world, stream, b, config.batch_size, config.truncation).to(device))
        totals["elbo"] += float(out["elbo"]) / batches
        totals["nll"] += float(out["nll"]) / batches
        totals["kl"] += out["kl"].float().cpu() / batches
    dims = vae.decoder.level_dims
    return {
        "neg_elbo_nats_per_dim": totals["elbo"],
        "nll_nats_per_dim": totals["nll"],
        "kl_nats": [round(float(k), 4) for k in totals["kl"]],
        "kl_nats_per_latent_dim": [round(float(k) / d, 6) for k, d in zip(totals["kl"], dims, strict=True)],
        "images": batches * config.batch_size,
    }


def plot_losses(metrics: pd.DataFrame, names: Sequence[str], path: Path) -> None:
    """-ELBO (left) and the KL of each level (right, log) against step."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    left.plot(metrics["step"], metrics["elbo"], label="-ELBO")
    left.plot(metrics["step"], metrics["nll"], label="reconstruction", alpha=0.7)
    left.set_xlabel("step")
    left.set_ylabel("nats per dimension")
    left.legend(fontsize=8)
    for i, name in enumerate(names):
        right.plot(metrics["step"], metrics[f"kl{i + 1}"].clip(lower=1e-3), label=f"z{i + 1} {name}")
    right.set_yscale("log")
    right.set_xlabel("step")
    right.set_ylabel("KL per image (nats)")
    right.legend(fontsize=7)
    fig.suptitle("embedded hierarchical VAE on the shapes world", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def sample_grid(decoder, path: Path, *, n: int = 64, seed: int = 0, title: str = "") -> None:
    """An 8 x 8 grid of ancestral samples (eps ~ N(0, I) at the decoder's temperature)."""
    from matplotlib.figure import Figure

    with torch.no_grad():
        x = decoder(sample_anchors(decoder, n, generator=Stream(seed, purpose="zoo-samples").at(0))).float().cpu()
    side = int(math.sqrt(n))
    grid = x[: side * side].view(side, side, 3, x.shape[-2], x.shape[-1]).permute(0, 3, 1, 4, 2)
    grid = grid.reshape(side * x.shape[-2], side * x.shape[-1], 3)
    fig = Figure(figsize=(5, 5.3))
    ax = fig.subplots()
    ax.imshow(grid.numpy())
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def train(config: ZooTrainConfig, *, progress: bool | None = None) -> dict[str, object]:
    out = make_output_dir(config.out)
    device = resolve_device(config.device)
    amp = use_bf16(config.amp, device)
    hvae = hvae_config(config)
    torch.manual_seed(config.seed)
    model = Trainee(hvae).to(device)
    optimizer = torch.optim.Adam(model.vae.parameters(), lr=config.lr)
    step_fn = VAEStep(model.vae, optimizer, amp=amp, level_weights=config.level_kl_weights, free_nats=config.free_nats)
    start, elapsed0 = 0, 0.0
    if (out / RECORD).exists():
        resumed = load_checkpoint(out, model, optimizer)
        own = json.loads(json.dumps(dataclasses.asdict(config)))  # as the checkpoint stores it (tuples as lists)
        if resumed.get("config", {}) | {"out": ""} != own | {"out": ""}:
            _log.warning("resuming %s with a config that differs from the run's own", out)
        start, elapsed0 = resumed["step"], float(resumed.get("elapsed_s", 0.0))
        _log.info("resumed %s at step %d", out, start)
    world = load_generator(f"shapes:resolution={config.resolution}", device=device)
    stream = Stream(config.seed, purpose="zoo-train")
    metrics_path = out / "metrics.csv"
    rows = pd.read_csv(metrics_path).query("step <= @start").to_dict("records") if metrics_path.exists() else []
    record = provenance(dataclasses.asdict(config))
    print(provenance_line(record))
    bar = Progress(config.steps, desc="zoo.train", unit="step", initial=start, terminal=progress)
    window: list[dict[str, float]] = []
    skipped = 0
    t0 = time.monotonic()
    for step in range(start, config.steps):
        x = images(world, stream, step, config.batch_size, config.truncation)
        torch.manual_seed(config.seed * 1_000_003 + step)  # the posterior's noise: exact on resume
        step_fn.kl_weight = min(1.0, (step + 1) / config.kl_warmup)
        step_fn.active = active_levels(config, step)
        _, result = step_fn.forward_backward(x, lr=learning_rate(config, step))  # clipped below, then maybe applied
        norm = float(torch.nn.utils.clip_grad_norm_(model.vae.parameters(), config.clip))
        if math.isfinite(norm) and norm < 20 * config.clip:
            optimizer.step()
            model.update_ema(config.ema if step >= config.warmup else 0.0)
        else:
            skipped += 1
        window.append({"elbo": float(result["elbo"].detach()), "nll": float(result["nll"].detach()),
                       **{f"kl{i + 1}": float(k) for i, k in enumerate(result["kl"].detach())}})  # fmt: skip
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            row = {"step": done, "lr": learning_rate(config, step), "grad_norm": norm, "skipped": skipped,
                   **pd.DataFrame(window).mean().to_dict()}  # fmt: skip
            rows.append(row)
            window = []
            bar.update(0, elbo=row["elbo"], kl=sum(row[f"kl{i + 1}"] for i in range(len(hvae.levels))))
        bar.update(1)
        if done % config.checkpoint_every == 0 or done == config.steps:
            atomic_write_text(metrics_path, pd.DataFrame(rows).to_csv(index=False))
            elapsed = elapsed0 + time.monotonic() - t0
            save_checkpoint(out, model, optimizer, step=done,
                            extra={"config": dataclasses.asdict(config), "elapsed_s": elapsed})  # fmt: skip
            plot_losses(pd.DataFrame(rows), hvae.level_names, out / "loss.png")
    bar.close()
    elapsed = elapsed0 + time.monotonic() - t0
    model.eval()
    evaluation = held_out_kl(model.ema, world, config, device)
    sample_grid(model.ema.decoder, out / "samples.png", title="embedded: ancestral samples, temperature 1")
    meta = {"hvae": hvae.to_dict(), "training": dataclasses.asdict(config) | {"out": ""},
            "train_seconds": round(elapsed, 1), "steps": config.steps, "amp": amp, **evaluation,
            "provenance": {k: record[k] for k in ("git", "hardware") if k in record}}  # fmt: skip
    save_weights(model.ema.decoder, meta, out / "embedded.safetensors")
    if config.publish:
        target = make_output_dir(config.publish, flag="--publish")
        for name in ("embedded.safetensors", "embedded.json"):
            shutil.copyfile(out / name, target / f".{name}.tmp")
            (target / f".{name}.tmp").replace(target / name)
    print(f"trained {config.steps:,} steps in {duration(elapsed)}; held-out -ELBO "
          f"{evaluation['neg_elbo_nats_per_dim']:.3f} nats/dim; KL per level (nats): "
          f"{evaluation['kl_nats']}")  # fmt: skip
    return meta
