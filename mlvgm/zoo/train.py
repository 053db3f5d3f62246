"""`python -m mlvgm.zoo.train`: train the embedded hierarchical VAE on the shapes world.

    python -m mlvgm.zoo.train --out runs/zoo/embedded       # about 40 min on 2 CPU cores (bf16), an hour in fp32
    python -m mlvgm.zoo.train --out runs/zoo/embedded --publish mlvgm/generators/weights   # and ship the result

Every step draws a fresh batch of shapes-world images (the same truncation as `mlvgm.data.export`), so
the VAE never sees an image twice and batch s is a function of (seed, s): a resumed run (`--resume`,
the default when RUN has a checkpoint) continues exactly. The weights shipped are an exponential moving
average of the trained ones. RUN gets metrics.csv, loss.png (-ELBO and KL per level against step),
samples.png and, at the end, embedded.safetensors + embedded.json (the decoder and its config, with the
per-level KL measured on held-out images); `--publish DIR` copies those two files into DIR.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from mlvgm.checkpoint import RECORD, load_checkpoint, save_checkpoint
from mlvgm.cli import resolve_device, run
from mlvgm.config import option, parse_config
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.base import sample_anchors
from mlvgm.generators.embedded import save_weights
from mlvgm.generators.hvae import HierarchicalVAE, HVAEConfig
from mlvgm.io import atomic_write_text, check_creatable, make_output_dir
from mlvgm.plots import save_png
from mlvgm.progress import Progress, duration
from mlvgm.provenance import provenance, provenance_line
from mlvgm.recipe import cpu_has_bf16
from mlvgm.streams import Stream

_log = logging.getLogger("mlvgm.zoo.train")


@dataclass(frozen=True)
class ZooTrainConfig:
    out: str = option("runs/zoo/embedded", "run folder (resumed when it holds a checkpoint)")
    steps: int = option(15_000, "training steps")
    batch_size: int = option(64, "images per step, fresh from the shapes world")
    resolution: int = option(32, "image side: 32 (64 quadruples the cost)")
    lr: float = option(2e-3, "Adam's peak learning rate (linear warm-up, then cosine to a tenth)")
    warmup: int = option(200, "learning-rate warm-up steps")
    kl_warmup: int = option(2_000, "steps over which the KL weight rises linearly from 0 to 1")
    ema: float = option(0.999, "decay of the weights' moving average (the weights shipped)")
    clip: float = option(5.0, "gradient-norm clip; a step whose norm exceeds 20x this is skipped")
    truncation: float = option(2.0, "truncation of the shapes world's latents (as mlvgm.data.export's)")
    seed: int = option(0, "seed of the image stream and the initialisation")
    eval_images: int = option(2_048, "held-out images the final per-level KL is measured on")
    checkpoint_every: int = option(1_000, "steps between checkpoints")
    log_every: int = option(50, "steps between rows of metrics.csv")
    amp: str = option("auto", "bf16 autocast: auto (CUDA, and CPUs with native bf16), on, off")
    publish: str = option("", "copy embedded.safetensors and .json here at the end (mlvgm/generators/weights ships)")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "eval_images", "checkpoint_every", "log_every"):
            if getattr(self, key) <= 0:
                raise InputError(f"--{key} must be > 0, got {getattr(self, key)}")
        if self.resolution not in (32, 64):
            raise InputError(f"--resolution must be 32 or 64, got {self.resolution}")
        if not 0 <= self.ema < 1:
            raise InputError(f"--ema must be in [0, 1), got {self.ema}")
        if self.amp not in ("auto", "on", "off"):
            raise InputError(f"--amp must be auto, on or off, got {self.amp!r}")

    def hvae(self) -> HVAEConfig:
        if self.resolution == 32:
            return HVAEConfig()
        widths = ((64, 24), *HVAEConfig().widths)
        return HVAEConfig(resolution=64, widths=widths, levels=HVAEConfig().levels)


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


def learning_rate(config: ZooTrainConfig, step: int) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def images(world, stream: Stream, step: int, n: int, truncation: float) -> torch.Tensor:
    """Batch `step` of the shapes world: (n, 3, R, R) in [0, 1], a function of (stream's seed, step)."""
    with torch.no_grad():
        return world(sample_anchors(world, n, truncation=truncation, generator=stream.at(step)))


@torch.no_grad()
def held_out_kl(vae: HierarchicalVAE, world, config: ZooTrainConfig, device: torch.device) -> dict[str, object]:
    """-ELBO and reconstruction term (nats per dimension, under the continuous Gaussian likelihood: they can be
    negative) and KL per level (nats per image), on images no training step saw."""
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
    amp = config.amp == "on" or (config.amp == "auto" and (device.type == "cuda" or cpu_has_bf16()))
    hvae = config.hvae()
    torch.manual_seed(config.seed)
    model = Trainee(hvae).to(device)
    optimizer = torch.optim.Adam(model.vae.parameters(), lr=config.lr)
    start, elapsed0 = 0, 0.0
    if (out / RECORD).exists():
        resumed = load_checkpoint(out, model, optimizer)
        if resumed.get("config", {}) | {"out": ""} != dataclasses.asdict(config) | {"out": ""}:
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
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            result = model.vae(x, kl_weight=min(1.0, (step + 1) / config.kl_warmup))
        optimizer.zero_grad(set_to_none=True)
        result["loss"].backward()
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


def main(argv: Sequence[str] | None = None) -> dict:
    config, _, _ = parse_config(
        ZooTrainConfig, None, argv, prog="python -m mlvgm.zoo.train",
        description="Train the embedded hierarchical VAE (load_generator('embedded')) on the shapes world.",
    )  # fmt: skip
    check_creatable(config.out)
    if config.publish:
        check_creatable(config.publish, flag="--publish")
    return train(config)


if __name__ == "__main__":
    raise SystemExit(run(main, "mlvgm.zoo.train"))
