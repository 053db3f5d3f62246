"""The judging behind `python -m mlvgm.zoo.evidence` (the command checks the arguments before this module loads
torch): `evidence(config)` trains a factor classifier on real shapes-world images, lets it judge the embedded
generator's samples (and a baseline's, side by side) against real images and against the real-vs-real floor,
reconstructs held-out real images, measures which level carries which factor and how strongly each level
moves the image, and writes the figures, evidence.json and README.md. The thresholds are docs/embedded.md's,
fixed before the runs.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from mlvgm import grid
from mlvgm.checkpoint import load_checkpoint
from mlvgm.cli import resolve_device
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.base import sample_anchors
from mlvgm.generators.hvae import HVAEConfig
from mlvgm.generators.shapes import SHAPE_CLASSES
from mlvgm.io import atomic_write_json, atomic_write_text, make_output_dir
from mlvgm.plots import save_png
from mlvgm.provenance import provenance, provenance_line
from mlvgm.runs import RECORD
from mlvgm.streams import Stream
from mlvgm.zoo.configs import EvidenceConfig, training_command
from mlvgm.zoo.depth import plot_depth, posterior_depth
from mlvgm.zoo.factor_classifier import FactorClassifier, ReadFactors, real_batch, train_classifier
from mlvgm.zoo.fidelity import frechet_distance, precision_recall
from mlvgm.zoo.gain import level_influence
from mlvgm.zoo.level_factors import flip_rates, plot_flips, shape_selective
from mlvgm.zoo.training import Trainee, sample_grid

K = 3  # precision/recall's neighbourhood (Kynkaanniemi et al.)
MIN_CONFIDENCE, SHARE_RANGE, MIN_PRECISION, MIN_RECALL = 0.80, (0.5, 2.0), 0.6, 0.6  # docs/embedded.md
RECONSTRUCTIONS = 64
DEPTH_IMAGES = 512  # held-out real images of the depth diagnostic: a share's standard error at most 0.022


def key(t: float) -> str:
    return f"{t:g}"


@torch.no_grad()
def read_images(classifier: FactorClassifier, batches: Sequence[Tensor]) -> dict[str, Tensor]:
    """The classifier's pooled features ("features", (N, F)) and each head's softmax ((N, classes) per factor)."""
    features, probs = [], {}
    for x in batches:
        h, logits = classifier.read(x.float())
        features.append(h)
        for name, out in logits.items():
            probs.setdefault(name, []).append(torch.softmax(out, dim=1))
    return {"features": torch.cat(features), **{name: torch.cat(p) for name, p in probs.items()}}


def class_shares(probs: Tensor) -> list[float]:
    """The share of images whose most probable class is each class."""
    counts = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).float()
    return [round(float(c), 5) for c in counts / counts.sum()]


def judge_shapes(probs: Tensor) -> dict[str, object]:
    """From the shape head's softmax (N, 12): mean max-softmax confidence, the share of images per predicted
    class, the classes nobody gets and the smallest share."""
    shares = class_shares(probs)
    return {
        "confidence": float(probs.amax(1).mean()),
        "shares": shares,
        "empty_classes": [SHAPE_CLASSES[i] for i, s in enumerate(shares) if s == 0],
        "min_share": min(shares),
    }


def judge(reading: dict[str, Tensor], real: dict[str, Tensor]) -> dict[str, object]:
    """One image set against the real reference set: the shape verdict, each factor's marginal and its total
    variation distance from the real one, the Frechet distance and precision/recall in the feature space."""
    out = judge_shapes(reading["shape"])
    real_shares = class_shares(real["shape"])
    out["share_ratio"] = [g / r if r > 0 else math.inf for g, r in zip(out["shares"], real_shares, strict=True)]
    factors = [k for k in reading if k != "features"]
    out["marginals"] = {f: class_shares(reading[f]) for f in factors}
    out["tv"] = {f: 0.5 * sum(abs(a - b) for a, b in zip(out["marginals"][f], class_shares(real[f]), strict=True))
                 for f in factors}  # fmt: skip
    out["frechet"] = frechet_distance(real["features"], reading["features"])
    out.update(precision_recall(real["features"], reading["features"], k=K))
    return out


def criteria(judged: dict[str, object]) -> list[dict[str, object]]:
    """docs/embedded.md's thresholds, each with its value and whether it holds."""
    low, high = min(judged["share_ratio"]), max(judged["share_ratio"])
    return [
        {"criterion": f"mean confidence >= {MIN_CONFIDENCE}", "value": judged["confidence"],
         "holds": judged["confidence"] >= MIN_CONFIDENCE},
        {"criterion": f"every shape class {SHARE_RANGE[0]}x-{SHARE_RANGE[1]}x its real share",
         "value": [low, high], "holds": SHARE_RANGE[0] <= low and high <= SHARE_RANGE[1]},
        {"criterion": f"precision >= {MIN_PRECISION}", "value": judged["precision"],
         "holds": judged["precision"] >= MIN_PRECISION},
        {"criterion": f"recall >= {MIN_RECALL}", "value": judged["recall"], "holds": judged["recall"] >= MIN_RECALL},
    ]  # fmt: skip


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


def real_images(world, n: int, seed: int, truncation: float, purpose: str) -> list[Tensor]:
    stream = Stream(seed, purpose=purpose)
    return [real_batch(world, stream, i // 256, min(256, n - i), truncation)[0] for i in range(0, n, 256)]


def judge_generator(g, classifier: FactorClassifier, real: dict[str, Tensor], config: EvidenceConfig) -> dict:
    """g's judgement at every temperature of the config and at its own default."""
    temperatures = sorted({*config.temperatures, g.temperature})
    return {key(t): judge(read_images(classifier, generated(g, config.images, config.seed, t)), real)
            for t in temperatures}  # fmt: skip


def trained_vae(run: Path, meta: dict, device: torch.device):
    """The run's moving-average VAE (encoder and decoder), from its last checkpoint."""
    model = Trainee(HVAEConfig.from_dict(meta["hvae"])).to(device)
    load_checkpoint(run, model)
    return model.ema.eval()


def reconstructions(vae, world, classifier: FactorClassifier,
                    config: EvidenceConfig) -> tuple[dict[str, float], Tensor]:  # fmt: skip
    """Held-out real images through the VAE's encoder and decoder, posterior means: the mean squared error, and
    the share whose reconstruction the shape head gives the original's true class (beside its accuracy on the
    originals). Returns the numbers and (2, n, 3, R, R) originals and reconstructions."""
    z = sample_anchors(world, RECONSTRUCTIONS, truncation=config.truncation,
                       generator=Stream(config.seed, purpose="zoo-reconstruct").at(0))  # fmt: skip
    with torch.no_grad():
        x, shape = world(z), world.factors(z)["shape"]
        recon = vae.reconstruct(x).float()
        numbers = {
            "images": RECONSTRUCTIONS,
            "mse": float((recon - x).pow(2).mean()),
            "shape_kept": float((classifier(recon).argmax(1) == shape).float().mean()),
            "shape_accuracy_on_originals": float((classifier(x).argmax(1) == shape).float().mean()),
        }
    return numbers, torch.stack([x, recon]).cpu()


def plot_classes(result: dict, path: Path) -> None:
    """Top: the shape classes the classifier assigns to real, generated and baseline images; bottom: the other
    factors' marginals alike, and the mean confidence against the sampling temperature."""
    from matplotlib.figure import Figure

    default = key(result["temperature"])
    sets = {"real": result["real_floor"], f"generated (T={default})": result["generated"][default]}
    if result.get("baseline"):
        base = result["baseline"]
        sets[f"baseline (T={key(base['temperature'])})"] = base["generated"][key(base["temperature"])]
    real_marginals = result["real_marginals"]
    factors = list(real_marginals)
    fig = Figure(figsize=(12, 6.6))
    grid_spec = fig.add_gridspec(2, len(factors))
    top = fig.add_subplot(grid_spec[0, :-1])
    width = 0.8 / len(sets)
    for j, (label, judged) in enumerate(sets.items()):
        shares = real_marginals["shape"] if label == "real" else judged["marginals"]["shape"]
        x = [i + (j - (len(sets) - 1) / 2) * width for i in range(len(SHAPE_CLASSES))]
        top.bar(x, shares, width=width, label=label)
    top.axhline(1 / len(SHAPE_CLASSES), color="black", linestyle=":", linewidth=1)
    top.set_xticks(range(len(SHAPE_CLASSES)), SHAPE_CLASSES, rotation=45, ha="right", fontsize=8)
    top.set_ylabel("share of images")
    top.set_title("shape class assigned by a classifier trained on real images", fontsize=9)
    top.legend(fontsize=8)
    conf = fig.add_subplot(grid_spec[0, -1])
    for label, generator in [("generated", result["generated"])] + (
        [("baseline", result["baseline"]["generated"])] if result.get("baseline") else []
    ):
        temps = sorted(float(t) for t in generator)
        conf.plot(temps, [generator[key(t)]["confidence"] for t in temps], "o-", label=label)
    conf.axhline(result["real_floor"]["confidence"], color="tab:gray", linestyle="--", label="real")
    conf.axhline(MIN_CONFIDENCE, color="black", linestyle=":", linewidth=1, label="threshold")
    conf.set_xlabel("sampling temperature")
    conf.set_ylabel("mean confidence (max softmax)")
    conf.set_ylim(0, 1.02)
    conf.legend(fontsize=7)
    for col, factor in enumerate(factors[1:]):
        ax = fig.add_subplot(grid_spec[1, col])
        n = len(real_marginals[factor])
        for j, (label, judged) in enumerate(sets.items()):
            shares = real_marginals[factor] if label == "real" else judged["marginals"][factor]
            ax.bar([i + (j - (len(sets) - 1) / 2) * width for i in range(n)], shares, width=width, label=label)
        ax.set_xticks(range(n))
        ax.tick_params(labelsize=7)
        ax.set_title(f"{factor} (bins)", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def plot_reconstructions(pairs: Tensor, path: Path, *, columns: int = 16) -> None:
    """Rows of originals over their reconstructions."""
    from matplotlib.figure import Figure

    n = pairs.shape[1] // columns * columns
    rows = []
    for start in range(0, n, columns):
        for which in (0, 1):
            rows.append(torch.cat(list(pairs[which, start : start + columns]), dim=-1))  # (3, R, columns R)
    image = torch.cat(rows, dim=-2).permute(1, 2, 0).clamp(0, 1).numpy()
    fig = Figure(figsize=(columns * 0.6, len(rows) * 0.6 + 0.5))
    ax = fig.subplots()
    ax.imshow(image)
    ax.axis("off")
    ax.set_title("held-out real images (odd rows) and their reconstructions from the posterior means (even rows)",
                 fontsize=8)  # fmt: skip
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


def quality_rows(result: dict) -> list[str]:
    rows = ["| images | mean confidence | shape share / real share (min, max) | Frechet distance | precision | "
            "recall | TV position | TV colour | TV background |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip

    def row(label: str, j: dict) -> str:
        tv = j["tv"]
        return (f"| {label} | {j['confidence']:.3f} | {min(j['share_ratio']):.2f}, {max(j['share_ratio']):.2f} | "
                f"{j['frechet']:.3g} | {j['precision']:.3f} | {j['recall']:.3f} | {tv['position']:.3f} | "
                f"{tv['color']:.3f} | {tv['background']:.3f} |")  # fmt: skip

    rows.append(row("real (a second set: the floor)", result["real_floor"]))
    for t in sorted(result["generated"], key=float):
        rows.append(row(f"generated, temperature {t}", result["generated"][t]))
    if result.get("baseline"):
        for t in sorted(result["baseline"]["generated"], key=float):
            rows.append(row(f"baseline, temperature {t}", result["baseline"]["generated"][t]))
    return rows


def readme(result: dict, meta: dict, record: dict, *, training: bool = False) -> str:
    default = key(result["temperature"])
    git = record["git"]
    accuracy = ", ".join(f"{k} {v:.3f}" for k, v in result["classifier_accuracy"].items())
    curves = ["Training curves (`training-metrics.csv`): -ELBO and each level's KL against step.", "",
              "![training](training-loss.png)", ""] if training else []  # fmt: skip
    baseline = result.get("baseline")
    hardware = meta.get("provenance", {}).get("hardware", {}).get("cpu", "the CPU")
    lines = [
        "# The embedded generator: evidence that it generates the shapes world",
        "",
        f"Command: `{record['command']}` "
        f"(git {str(git['sha'])[:10]}{' dirty' if git['dirty'] else ''}, {record['hardware']['cpu']} "
        f"x{record['hardware']['cpu_cores']}, {record['time']}).",
        "",
        f"The weights: `{training_command(meta.get('training', {}))}`, {meta['steps']:,} steps of "
        f"{meta.get('training', {}).get('batch_size', 64)} fresh shapes-world images at "
        f"{meta['hvae']['resolution']} px, {meta['train_seconds'] / 60:.0f} min on {hardware} "
        f"({'bf16 autocast' if meta.get('amp') else 'fp32'}); held-out -ELBO {meta['neg_elbo_nats_per_dim']:.3f} "
        f"nats per dimension ({meta['hvae'].get('likelihood', 'gaussian')} likelihood).",
        "",
        "![samples](samples.png)",
        "",
        *curves,
        "## A classifier trained on real images judges the samples",
        "",
        f"Two small CNNs with a head per factor (the shape head on a trunk of its own, the other three sharing one), "
        f"trained on {result['classifier_steps']:,} batches of 128 real shapes images, classify 4,096 held-out real "
        f"images with accuracy {accuracy}. Their {result.get('feature_dim', 128)} pooled features are the "
        f"space of the Frechet distance and of precision and recall (k = {K}). Each row is {result['images']:,} "
        f"images, judged against the same {result['images']:,} real ones; the first row is a second real set, the "
        "floor that sampling noise alone gives. TV: total variation distance between the factor's class shares and the "
        "real ones." + (f" Baseline: `{baseline['generator']}`." if baseline else ""),
        "",
        *quality_rows(result),
        "",
        f"At the shipped temperature ({default}), against docs/embedded.md's thresholds (fixed before the runs):",
        "",
        *[f"- {c['criterion']}: {_fmt(c['value'])} ({'holds' if c['holds'] else 'fails'})" for c in result["criteria"]],
        "",
        "![classes](classes.png)",
        "",
    ]
    if "reconstruction" in result:
        r = result["reconstruction"]
        lines += ["## Reconstructions of held-out real images", "",
                  f"{r['images']} real images the training never saw, encoded and decoded from the posterior means: "
                  f"mean squared error {r['mse']:.4f} (pixels in [0, 1]); the shape head gives the reconstruction the "
                  f"original's true class in {r['shape_kept']:.3f} of them (on the originals: "
                  f"{r['shape_accuracy_on_originals']:.3f}).", "", "![reconstructions](reconstructions.png)",
                  ""]  # fmt: skip
    if "depth" in result:
        names = meta["hvae"]["level_names"]
        lines += ["## Which levels fix a real image's factors", "",
                  f"{DEPTH_IMAGES} held-out real images, decoded from the posterior means of z1..zk and prior draws "
                  f"(temperature {result['temperature']:g}) for the levels below: the share whose classifier "
                  "reading of each factor equals the original's. k = 0 is a plain sample (chance agreement); the "
                  "last column is the reconstruction.", "",
                  "| factor | " + " | ".join(["prior only", *[f"z1..z{k + 1}" for k in range(len(names))]]) + " |",
                  "|---|" + "---|" * (len(names) + 1)]  # fmt: skip
        for factor, values in result["depth"].items():
            lines.append(f"| {factor} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
        lines += ["", "![depth](depth.png)", ""]
    lines += ["## Which level carries which factor", "",
              f"Per level and sigma, the share of anchor/positive pairs ({result['pairs']}, the level moved by sigma "
              "times truncated-normal noise) in which each factor differs, read by the classifier (`flips.csv`). The "
              "shapes world is measured both by its ground truth and by the classifier: the gap is what the "
              "classifier's errors add. Shape-selective (docs/embedded.md): at some sigma, shape flips in at least "
              "a quarter of the pairs and every other factor in at most half as many.", "",
              "| generator | shape-selective levels | not shape-selective |", "|---|---|---|"]  # fmt: skip
    for name, verdict in result["shape_selective"].items():
        yes = [k for k, v in verdict.items() if v]
        no = [k for k, v in verdict.items() if not v]
        lines.append(f"| {name} | {', '.join(yes) or 'none'} | {', '.join(no) or 'none'} |")
    lines += ["", "![flips](flips.png)", "",
              "## Per level: what it carries (KL) and how strongly it moves the image (gain)", "",
              "KL: the trained VAE's KL(q || p) per level on held-out images (the weights' JSON). Gain: the Jacobian "
              "of the image (3 x 32 x 32 values in [0, 1]) with respect to the level's latent, at 16 anchors: its "
              "largest singular value (the most sensitive direction, the one a walker can find) and its RMS over "
              "random directions.", "",
              "| level | shape | KL per image (nats) | KL per dimension (nats) | top gain | RMS gain |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for i, (name, (r, c)) in enumerate(zip(meta["hvae"]["level_names"], meta["hvae"]["levels"], strict=True)):
        gain = result["influence"][i]
        lines.append(f"| z{i + 1} {name} | {c}x{r}x{r} = {c * r * r} | {meta['kl_nats'][i]:.2f} | "
                     f"{meta['kl_nats_per_latent_dim'][i]:.4f} | {gain['top_singular']:.3g} | "
                     f"{gain['rms_gain']:.3g} |")  # fmt: skip
    lines += ["", "![kl](kl.png)", "", "## View grid (`python -m mlvgm.grid --generator embedded`)", "",
              "The same noise vector (its leading coordinates for the smaller levels) added to one level per column.",
              "", "![views](views.png)", ""]  # fmt: skip
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(f"{v:.3g}" for v in value)
    return f"{value:.3f}"


def embedded_generator(spec: str, device: torch.device):
    g = load_generator(spec, device=device)
    if getattr(g, "embedded_meta", None) is None:
        raise InputError(f"{spec} is not an embedded generator: give embedded[:weights=PATH]")
    return g


def evidence(config: EvidenceConfig) -> dict:
    device = resolve_device(config.device)
    g = embedded_generator(config.generator, device)
    base = embedded_generator(config.baseline, device) if config.baseline else None
    meta = g.embedded_meta
    out = make_output_dir(config.out)
    world = load_generator(f"shapes:resolution={g.resolution}", device=device)
    record = provenance(dataclasses.asdict(config))
    print(provenance_line(record))
    sample_grid(g, out / "samples.png", title=f"embedded: samples at temperature {g.temperature:g}")
    classifier, accuracy = train_classifier(world, steps=config.classifier_steps, truncation=config.truncation,
                                            seed=config.seed, device=device)  # fmt: skip
    real = read_images(classifier, real_images(world, config.images, config.seed + 1, config.truncation, "zoo-real"))
    floor = read_images(classifier, real_images(world, config.images, config.seed + 2, config.truncation, "zoo-floor"))
    result = {
        "temperature": g.temperature, "classifier_steps": config.classifier_steps, "images": config.images,
        "pairs": config.pairs,
        "classifier_accuracy": accuracy, "feature_dim": classifier.feature_dim,
        "real_marginals": {f: class_shares(real[f]) for f in real if f != "features"},
        "real_floor": judge(floor, real),
        "generated": judge_generator(g, classifier, real, config),
    }  # fmt: skip
    result["criteria"] = criteria(result["generated"][key(g.temperature)])
    if base is not None:
        result["baseline"] = {"generator": config.baseline, "temperature": base.temperature,
                              "generated": judge_generator(base, classifier, real, config)}  # fmt: skip
        result["baseline"]["criteria"] = criteria(result["baseline"]["generated"][key(base.temperature)])
    if config.run and (Path(config.run) / RECORD).exists():
        vae = trained_vae(Path(config.run), meta, device)
        result["reconstruction"], pairs = reconstructions(vae, world, classifier, config)
        plot_reconstructions(pairs, out / "reconstructions.png")
        x = world(sample_anchors(world, DEPTH_IMAGES, truncation=config.truncation,
                                 generator=Stream(config.seed, purpose="zoo-depth").at(0)))  # fmt: skip
        eps = sample_anchors(g, DEPTH_IMAGES, generator=Stream(config.seed, purpose="zoo-depth").at(1))
        vae.decoder.temperature = g.temperature  # the prior draws as the shipped samples draw them
        result["depth"], depth_grid = posterior_depth(vae, x, classifier, eps)
        plot_depth(depth_grid, result["depth"], meta["hvae"]["level_names"], out / "depth.png")
    tables = {"embedded": flip_rates(ReadFactors(g, classifier), pairs=config.pairs, seed=config.seed)}
    if base is not None:
        tables["baseline"] = flip_rates(ReadFactors(base, classifier), pairs=config.pairs, seed=config.seed)
    tables["shapes (classifier)"] = flip_rates(ReadFactors(world, classifier), pairs=config.pairs, seed=config.seed)
    tables["shapes (ground truth)"] = flip_rates(world, pairs=config.pairs, seed=config.seed)
    result["shape_selective"] = {name: shape_selective(t) for name, t in tables.items()}
    flips = pd.concat([t.assign(generator=name) for name, t in tables.items()], ignore_index=True)
    atomic_write_text(out / "flips.csv", flips.to_csv(index=False))
    plot_flips(tables, out / "flips.png")
    result["influence"] = level_influence(g, seed=config.seed)
    plot_classes(result, out / "classes.png")
    plot_kl(meta, out / "kl.png")
    table = pd.DataFrame({"class": SHAPE_CLASSES, "real": result["real_marginals"]["shape"],
                          "generated": result["generated"][key(g.temperature)]["shares"]})  # fmt: skip
    atomic_write_text(out / "classifier.csv", table.to_csv(index=False))
    for name in ("loss.png", "metrics.csv") if config.run else ():
        shutil.copyfile(Path(config.run) / name, out / f".training-{name}.tmp")
        (out / f".training-{name}.tmp").replace(out / f"training-{name}")
    grid.main(["--out", str(out / "views.png"), "--generator", config.generator, "--device", config.device])
    atomic_write_json(out / "evidence.json", {**result, "weights": {k: v for k, v in meta.items() if k != "provenance"},
                                              "provenance": record})  # fmt: skip
    atomic_write_text(out / "README.md", readme(result, meta, record, training=bool(config.run)))
    print(f"classifier accuracy on held-out real images: {accuracy}")
    for t, judged in result["generated"].items():
        print(f"generated at temperature {t}: confidence {judged['confidence']:.3f}, precision "
              f"{judged['precision']:.3f}, recall {judged['recall']:.3f}, Frechet {judged['frechet']:.3g} "
              f"(real floor {result['real_floor']['frechet']:.3g})")  # fmt: skip
    for c in result["criteria"]:
        print(f"{'holds' if c['holds'] else 'FAILS'}: {c['criterion']} ({_fmt(c['value'])})")
    print(f"wrote {out}/: samples.png, classes.png, flips.png, kl.png, views.png, evidence.json, README.md")
    return result
