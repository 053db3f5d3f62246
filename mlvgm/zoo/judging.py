"""The judging behind `python -m mlvgm.zoo.evidence` (the command checks the arguments before this module loads
torch): `evidence(config)` trains a shape classifier on real shapes-world images, lets it judge the embedded
generator's samples, measures each level's influence on the image, and writes the figures, evidence.json and
README.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import jvp, vjp

from mlvgm import grid
from mlvgm.cli import resolve_device
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.base import sample_anchors
from mlvgm.generators.shapes import SHAPE_CLASSES
from mlvgm.io import atomic_write_json, atomic_write_text, make_output_dir
from mlvgm.plots import save_png
from mlvgm.progress import Progress
from mlvgm.provenance import provenance, provenance_line
from mlvgm.streams import Stream
from mlvgm.zoo.configs import EvidenceConfig
from mlvgm.zoo.training import sample_grid


class ShapeClassifier(nn.Module):
    """Four conv blocks (32 px -> 2 px) and a linear layer to the 12 shape classes."""

    def __init__(self, classes: int = len(SHAPE_CLASSES), width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, 2 * width, 4 * width, 4 * width):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.GELU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != 32:
            x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        return self.head(self.features(x * 2 - 1).mean(dim=(2, 3)))  # (B, classes) logits


def real_batch(world, stream: Stream, step: int, n: int, truncation: float) -> tuple[Tensor, Tensor]:
    """(images, shape labels) of batch `step` of the shapes world."""
    with torch.no_grad():
        z = sample_anchors(world, n, truncation=truncation, generator=stream.at(step))
        return world(z), world.factors(z)["shape"]


def train_classifier(world, config: EvidenceConfig, device: torch.device) -> tuple[ShapeClassifier, float]:
    """The classifier and its top-1 accuracy on 4,096 held-out real images."""
    torch.manual_seed(config.seed)
    model = ShapeClassifier().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=config.classifier_steps)
    stream = Stream(config.seed, purpose="zoo-classifier")
    bar = Progress(config.classifier_steps, desc="classifier", unit="step")
    for step in range(config.classifier_steps):
        x, y = real_batch(world, stream, step, 128, config.truncation)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.update(1, loss=float(loss.detach()))
    bar.close()
    model.eval()
    held_out = Stream(config.seed, purpose="zoo-classifier-test")
    correct = 0
    with torch.no_grad():
        for b in range(32):
            x, y = real_batch(world, held_out, b, 128, config.truncation)
            correct += int((model(x).argmax(1) == y).sum())
    return model, correct / (32 * 128)


@torch.no_grad()
def judge(model: ShapeClassifier, batches: Sequence[Tensor]) -> dict[str, object]:
    """Mean max-softmax confidence, the share of images per predicted class, and the classes nobody gets."""
    probs = torch.cat([torch.softmax(model(x), dim=1) for x in batches])
    counts = torch.bincount(probs.argmax(1), minlength=len(SHAPE_CLASSES)).float()
    shares = counts / counts.sum()
    return {
        "confidence": float(probs.amax(1).mean()),
        "shares": [round(float(s), 5) for s in shares],
        "empty_classes": [SHAPE_CLASSES[i] for i in range(len(SHAPE_CLASSES)) if counts[i] == 0],
        "min_share": float(shares.min()),
    }


def generated(g, n: int, seed: int, temperature: float) -> list[Tensor]:
    """n images of g at `temperature` (the embedded decoder's attribute), in batches of 256."""
    previous = getattr(g, "temperature", None)
    if previous is not None:
        g.temperature = temperature
    try:
        stream = Stream(seed, purpose="zoo-judge")
        return [g(sample_anchors(g, min(256, n - i), generator=stream.at(i // 256))) for i in range(0, n, 256)]
    finally:
        if previous is not None:
            g.temperature = previous


def level_influence(g, n: int = 16, iters: int = 30, seed: int = 0) -> list[dict[str, float]]:
    """How strongly each level moves the image: per level, the largest singular value of d image / d z_i (power
    iteration with forward- and reverse-mode products, per anchor) and the root-mean-square gain over random
    directions (||J||_F / sqrt(d_i), by Hutchinson's estimate); both the mean over n anchors at truncation 2."""

    anchors = sample_anchors(g, n, truncation=2.0, generator=Stream(seed, purpose="zoo-influence").at(0))
    noise = torch.Generator(device=anchors[0].device).manual_seed(seed)
    out = []
    for i in range(len(g.level_dims)):

        def image(z_i: Tensor, i: int = i) -> Tensor:
            return g([z_i if j == i else z for j, z in enumerate(anchors)]).flatten(1)  # (n, pixels)

        v = torch.randn(anchors[i].shape, generator=noise, device=anchors[i].device)
        for _ in range(iters):  # v <- J^T J v, per anchor: the images are independent, so J is block-diagonal
            v = v / v.norm(dim=1, keepdim=True)
            _, jv = jvp(image, (anchors[i],), (v,))
            v = vjp(image, anchors[i])[1](jv)[0]
        v = v / v.norm(dim=1, keepdim=True)
        top = jvp(image, (anchors[i],), (v,))[1].norm(dim=1)  # (n,)
        probes = [jvp(image, (anchors[i],), (torch.randn(anchors[i].shape, generator=noise),))[1] for _ in range(8)]
        frobenius = torch.stack([p.pow(2).sum(1) for p in probes]).mean(0).sqrt()  # (n,)
        rms = frobenius / math.sqrt(g.level_dims[i])
        out.append({"top_singular": float(top.mean()), "rms_gain": float(rms.mean())})
    return out


def plot_classes(result: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.8))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    x = torch.arange(len(SHAPE_CLASSES)).numpy()
    default = f"{result['temperature']:g}"
    left.bar(x - 0.2, result["real"]["shares"], width=0.4, label="real", color="tab:gray")
    left.bar(x + 0.2, result["generated"][default]["shares"], width=0.4, label=f"generated (T={default})",
             color="tab:blue")  # fmt: skip
    left.axhline(1 / len(SHAPE_CLASSES), color="black", linestyle=":", linewidth=1)
    left.set_xticks(x, SHAPE_CLASSES, rotation=45, ha="right", fontsize=8)
    left.set_ylabel("share of images")
    left.set_title("shape class assigned by a classifier trained on real images", fontsize=9)
    left.legend(fontsize=8)
    temps = sorted(float(t) for t in result["generated"])
    right.plot(temps, [result["generated"][f"{t:g}"]["confidence"] for t in temps], "o-", label="generated")
    right.axhline(result["real"]["confidence"], color="tab:gray", linestyle="--", label="real")
    right.set_xlabel("sampling temperature")
    right.set_ylabel("mean confidence (max softmax)")
    right.set_ylim(0, 1.02)
    right.legend(fontsize=8)
    right.set_title(f"classifier accuracy on real: {result['classifier_accuracy']:.3f}", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def plot_kl(meta: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    names = meta["hvae"]["level_names"]
    levels = meta["hvae"]["levels"]
    labels = [f"z{i + 1} {n}\n{c}x{r}x{r}" for i, (n, (r, c)) in enumerate(zip(names, levels, strict=True))]
    fig = Figure(figsize=(8, 3.4))
    left, right = fig.subplots(1, 2)
    left.bar(labels, meta["kl_nats"], color="tab:purple")
    left.set_yscale("log")
    left.set_ylabel("KL per image (nats)")
    right.bar(labels, meta["kl_nats_per_latent_dim"], color="tab:purple")
    right.set_yscale("log")
    right.set_ylabel("KL per latent dimension (nats)")
    for ax in (left, right):
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle("embedded VAE: information each level carries (held-out images)", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def readme(result: dict, meta: dict, record: dict, *, training: bool = False) -> str:
    default = f"{result['temperature']:g}"
    gen = result["generated"][default]
    git = record["git"]
    top = max(range(len(SHAPE_CLASSES)), key=lambda i: gen["shares"][i])
    curves = ["Training curves (`training-metrics.csv`): -ELBO and each level's KL against step.", "",
              "![training](training-loss.png)", ""] if training else []  # fmt: skip
    lines = [
        "# The embedded generator: evidence that it generates the shapes world",
        "",
        f"Command: `{record['command']}` "
        f"(git {str(git['sha'])[:10]}{' dirty' if git['dirty'] else ''}, {record['hardware']['cpu']} "
        f"x{record['hardware']['cpu_cores']}, {record['time']}).",
        "",
        f"The weights: `python -m mlvgm.zoo.train` (its defaults), {meta['steps']:,} steps of 64 fresh shapes-world "
        f"images at {meta['hvae']['resolution']} px, {meta['train_seconds'] / 60:.0f} min on "
        f"{meta.get('provenance', {}).get('hardware', {}).get('cpu', 'the CPU')} "
        f"({'bf16 autocast' if meta.get('amp') else 'fp32'}); held-out -ELBO "
        f"{meta['neg_elbo_nats_per_dim']:.3f} nats per dimension (continuous Gaussian likelihood).",
        "",
        "![samples](samples.png)",
        "",
        *curves,
        "## A classifier trained on real images judges the samples",
        "",
        f"A small CNN trained on {result['classifier_steps']:,} batches of 128 real shapes images classifies "
        f"held-out real images with accuracy {result['classifier_accuracy']:.3f}. On {result['images']:,} images each:",
        "",
        "| images | mean confidence | smallest class share | classes never assigned |",
        "|---|---|---|---|",
        f"| real | {result['real']['confidence']:.3f} | {result['real']['min_share']:.3f} | "
        f"{', '.join(result['real']['empty_classes']) or 'none'} |",
    ]
    for t in sorted(result["generated"], key=float):
        g = result["generated"][t]
        lines.append(f"| generated, temperature {t} | {g['confidence']:.3f} | {g['min_share']:.3f} | "
                     f"{', '.join(g['empty_classes']) or 'none'} |")  # fmt: skip
    lines += [
        "",
        f"Uniform is {1 / len(SHAPE_CLASSES):.3f} per class. At temperature {default} the generated share is "
        f"{gen['min_share']:.3f} for the rarest class, "
        + ("so no class collapsed" if not gen["empty_classes"] else "and some classes are never generated")
        + f"; the commonest, {SHAPE_CLASSES[top]}, takes {gen['shares'][top]:.3f} (real: "
        f"{result['real']['shares'][top]:.3f}).",
        "",
        "![classes](classes.png)",
        "",
        "## Per level: what it carries (KL) and how strongly it moves the image (gain)",
        "",
        "KL: the trained VAE's KL(q || p) per level on held-out images (the weights' JSON). Gain: the Jacobian of "
        "the image (3 x 32 x 32 values in [0, 1]) with respect to the level's latent, at 16 anchors: its largest "
        "singular value (the most sensitive direction, the one a walker can find) and its RMS over random "
        "directions.",
        "",
        "| level | shape | KL per image (nats) | KL per dimension (nats) | top gain | RMS gain |",
        "|---|---|---|---|---|---|",
    ]
    for i, (name, (r, c)) in enumerate(zip(meta["hvae"]["level_names"], meta["hvae"]["levels"], strict=True)):
        gain = result["influence"][i]
        lines.append(f"| z{i + 1} {name} | {c}x{r}x{r} = {c * r * r} | {meta['kl_nats'][i]:.2f} | "
                     f"{meta['kl_nats_per_latent_dim'][i]:.4f} | {gain['top_singular']:.3g} | "
                     f"{gain['rms_gain']:.3g} |")  # fmt: skip
    lines += ["", "![kl](kl.png)", "", "## View grid (`python -m mlvgm.grid --generator embedded`)", "",
              "The same noise vector (its leading coordinates for the smaller levels) added to one level per column.",
              "", "![views](views.png)", ""]  # fmt: skip
    return "\n".join(lines)


def evidence(config: EvidenceConfig) -> dict:
    device = resolve_device(config.device)
    g = load_generator(config.generator, device=device)
    meta = getattr(g, "embedded_meta", None)
    if meta is None:
        raise InputError(f"{config.generator} is not an embedded generator: give embedded[:weights=PATH]")
    out = make_output_dir(config.out)
    world = load_generator(f"shapes:resolution={g.resolution}", device=device)
    record = provenance(dataclasses.asdict(config))
    print(provenance_line(record))
    sample_grid(g, out / "samples.png", title=f"embedded: samples at temperature {g.temperature:g}")
    classifier, accuracy = train_classifier(world, config, device)
    real_stream = Stream(config.seed + 1, purpose="zoo-judge-real")
    real = [
        real_batch(world, real_stream, i // 256, min(256, config.images - i), config.truncation)[0]
        for i in range(0, config.images, 256)
    ]
    result = {
        "temperature": g.temperature, "classifier_steps": config.classifier_steps, "images": config.images,
        "classifier_accuracy": accuracy, "real": judge(classifier, real),
        "generated": {f"{t:g}": judge(classifier, generated(g, config.images, config.seed, t))
                      for t in sorted({*config.temperatures, g.temperature})},
    }  # fmt: skip
    result["influence"] = level_influence(g, seed=config.seed)
    plot_classes(result, out / "classes.png")
    plot_kl(meta, out / "kl.png")
    table = pd.DataFrame({"class": SHAPE_CLASSES, "real": result["real"]["shares"],
                          "generated": result["generated"][f"{g.temperature:g}"]["shares"]})  # fmt: skip
    atomic_write_text(out / "classifier.csv", table.to_csv(index=False))
    for name in ("loss.png", "metrics.csv") if config.run else ():
        shutil.copyfile(Path(config.run) / name, out / f".training-{name}.tmp")
        (out / f".training-{name}.tmp").replace(out / f"training-{name}")
    grid.main(["--out", str(out / "views.png"), "--generator", config.generator, "--device", config.device])
    atomic_write_json(out / "evidence.json", {**result, "weights": {k: v for k, v in meta.items() if k != "provenance"},
                                              "provenance": record})  # fmt: skip
    atomic_write_text(out / "README.md", readme(result, meta, record, training=bool(config.run)))
    print(json.dumps({k: result[k] for k in ("classifier_accuracy", "real")}, indent=None))
    for t, judged in result["generated"].items():
        print(
            f"generated at temperature {t}: confidence {judged['confidence']:.3f}, "
            f"rarest class share {judged['min_share']:.3f}, empty classes {judged['empty_classes'] or 'none'}"
        )
    print(f"wrote {out}/: samples.png, classes.png, classifier.csv, kl.png, views.png, evidence.json, README.md")
    return result
