"""`python -m mlvgm.evaluate --run RUN_DIR`: what a trained encoder learned, by linear probe and kNN.

The backbone is frozen and its features computed once for a labelled train and test set:
- the shapes world: generated images (held-out streams) labelled by each ground-truth factor, one
  probe per factor (shape, position, color, background): which invariances did the views teach?
- an image folder with train/ and val/ subfolders (what `mlvgm.data.export` writes, or ImageNet's).

Then (a) a linear probe, cross-entropy with SGD (momentum 0.9, cosine decay, no weight decay, as the
paper's protocol) on standardised features, and (b) kNN with k = 20, cosine similarity and votes
weighted by exp(sim / 0.07) (Wu et al. 2018, InstDisc). Both report top-1 and top-5 accuracy. The
same numbers for the encoder at its random initialisation (the run's own starting point) stand beside
the trained ones, so a table always shows what training added.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlvgm.augment import PixelAugment
from mlvgm.errors import InputError
from mlvgm.streams import Stream

KNN_K = 20
KNN_TEMPERATURE = 0.07


@torch.no_grad()
def extract_features(backbone: nn.Module, images: Tensor, *, batch: int = 256, device=None) -> Tensor:
    """(N, F) float32 features of normalised (N, 3, S, S) images, in eval mode."""
    was_training = backbone.training
    backbone.eval()
    device = device or next(backbone.parameters()).device
    out = [backbone(images[i : i + batch].to(device)).float().cpu() for i in range(0, len(images), batch)]
    backbone.train(was_training)
    return torch.cat(out)


def _topk(scores: Tensor, labels: Tensor, *, require_positive: bool = False) -> tuple[float, float]:
    """(top-1, top-5): the true class is within the first 1 (5) when fewer classes score strictly
    higher. Ties are resolved for the true class, so the figures do not depend on the sort's order;
    with require_positive (kNN votes), a class no neighbour voted for is never a hit."""
    true = scores.gather(1, labels[:, None])  # (N, 1)
    higher = (scores > true).sum(dim=1)  # (N,)
    valid = (true[:, 0] > 0) if require_positive else torch.ones_like(higher, dtype=torch.bool)
    return float(((higher < 1) & valid).float().mean()), float(((higher < 5) & valid).float().mean())


def knn_accuracy(
    train: Tensor,  # (N, F) features
    train_labels: Tensor,  # (N,) int64
    test: Tensor,  # (M, F)
    test_labels: Tensor,  # (M,)
    classes: int,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    chunk: int = 1024,
) -> tuple[float, float]:
    """Weighted kNN (InstDisc): score_c = sum over the k most similar train samples of class c of
    exp(cos / temperature). Returns (top-1, top-5)."""
    train, test = F.normalize(train.float(), dim=1), F.normalize(test.float(), dim=1)
    k = min(k, len(train))
    scores = []
    for i in range(0, len(test), chunk):
        sim, index = (test[i : i + chunk] @ train.T).topk(k, dim=1)  # (m, k)
        votes = torch.zeros(len(index), classes).scatter_add_(1, train_labels[index], (sim / temperature).exp())
        scores.append(votes)
    return _topk(torch.cat(scores), test_labels, require_positive=True)


def linear_probe(
    train: Tensor,  # (N, F)
    train_labels: Tensor,  # (N,)
    test: Tensor,  # (M, F)
    test_labels: Tensor,  # (M,)
    classes: int,
    *,
    epochs: int = 100,
    lr: float = 0.5,  # on standardised features; the paper's lr 30 is for raw ResNet-50 features
    batch: int = 256,
    seed: int = 0,
) -> tuple[float, float]:
    """Softmax regression on frozen features, SGD with momentum 0.9 and cosine decay; (top-1, top-5)."""
    mean, std = train.mean(dim=0), train.std(dim=0) + 1e-6
    x, x_test = (train - mean) / std, (test - mean) / std
    generator = torch.Generator().manual_seed(seed)
    layer = nn.Linear(x.shape[1], classes)
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.01, generator=generator)
        layer.bias.zero_()
    optimizer = torch.optim.SGD(layer.parameters(), lr=lr, momentum=0.9)
    steps_per_epoch = math.ceil(len(x) / batch)
    total = epochs * steps_per_epoch
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), batch):
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            idx = order[i : i + batch]
            loss = F.cross_entropy(layer(x[idx]), train_labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    with torch.no_grad():
        return _topk(layer(x_test), test_labels)


# --- labelled data -----------------------------------------------------------------------------------


@torch.no_grad()
def generated_probe_set(g, n: int, *, seed: int, purpose: str, size: int, truncation: float | None, device):
    """(images (n, 3, size, size) normalised, {factor: labels (n,)}) from a held-out latent stream."""
    to_input = PixelAugment("none", size).to(device)
    stream = Stream(seed, purpose=purpose)
    images, labels = [], {}
    chunk = 256
    for step in range(math.ceil(n / chunk)):
        z = g.sample_latents(chunk, truncation=truncation, generator=stream.at(step))
        count = min(chunk, n - step * chunk)
        z = [zi[:count] for zi in z]
        images.append(to_input(g(z)).cpu())
        for name, value in g.factors(z).items():
            labels.setdefault(name, []).append(value.cpu())
    return torch.cat(images), {name: torch.cat(v) for name, v in labels.items()}


def folder_probe_set(root: Path, split: str, *, size: int) -> tuple[Tensor, dict[str, Tensor], int]:
    from torchvision import datasets

    from mlvgm.data.sources import folder_transform

    folder = root / split
    if not folder.is_dir():
        raise InputError(f"{folder} does not exist: evaluation needs {root}/train and {root}/val class folders")
    dataset = datasets.ImageFolder(str(folder), transform=folder_transform(size), allow_empty=True)
    to_input = PixelAugment("none", size)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]).float() / 255.0
    labels = torch.tensor(dataset.targets)
    return to_input(images), {"class": labels}, len(dataset.classes)


def evaluate_backbones(
    backbones: dict[str, nn.Module],  # name ("trained", "random init") -> backbone
    train: tuple[Tensor, dict[str, Tensor]],
    test: tuple[Tensor, dict[str, Tensor]],
    classes: dict[str, int],  # factor -> number of classes
    *,
    device,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (factor, encoder): linear and kNN top-1/top-5."""
    rows = []
    for name, backbone in backbones.items():
        print(
            f"evaluating {name}: features of {len(train[0])} + {len(test[0])} images, probes for {', '.join(classes)}"
        )
        train_f = extract_features(backbone, train[0], device=device)
        test_f = extract_features(backbone, test[0], device=device)
        for factor, count in classes.items():
            y, y_test = train[1][factor], test[1][factor]
            lin1, lin5 = linear_probe(train_f, y, test_f, y_test, count, seed=seed)
            knn1, knn5 = knn_accuracy(train_f, y, test_f, y_test, count)
            rows.append({"factor": factor, "encoder": name, "classes": count,
                         "linear_top1": round(lin1, 4), "linear_top5": round(lin5, 4),
                         "knn_top1": round(knn1, 4), "knn_top5": round(knn5, 4)})  # fmt: skip
    return pd.DataFrame(rows)


def evaluate_method(config, method: nn.Module, *, device) -> pd.DataFrame:
    """Probe tables for a trained method and for the same architecture at the run's initialisation."""
    from mlvgm.train import build_method, generator_spec

    torch.manual_seed(config.seed)
    initial = build_method(config).to(device).backbone  # the weights the run started from
    backbones = {"trained": method.backbone, "random init": initial}
    if config.source == "imagefolder":
        root = Path(config.data)
        size = config.crop or 64
        train_x, train_y, count = folder_probe_set(root, "train", size=size)
        test_x, test_y, _ = folder_probe_set(root, "val", size=size)
        return evaluate_backbones(backbones, (train_x, train_y), (test_x, test_y), {"class": count}, device=device)
    from mlvgm.generators import load_generator

    g = load_generator(generator_spec(config), device=device)
    if not hasattr(g, "factors"):
        raise InputError(f"{config.generator} has no labels to probe: evaluate on an image folder with --data")
    size = config.crop or g.resolution
    common = {"seed": config.seed, "size": size, "truncation": config.truncation, "device": device}
    train = generated_probe_set(g, config.eval_train, purpose="eval-train", **common)
    test = generated_probe_set(g, config.eval_test, purpose="eval-test", **common)
    return evaluate_backbones(backbones, train, test, dict(g.factor_classes), device=device, seed=config.seed)


def probes_markdown(table: pd.DataFrame) -> str:
    """Trained vs random init side by side, one row per factor (top-1 accuracy, %)."""
    lines = ["| factor | classes | linear: trained | linear: random init | kNN: trained | kNN: random init |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for factor, rows in table.groupby("factor", sort=False):
        by = {row["encoder"]: row for _, row in rows.iterrows()}
        t, r = by["trained"], by["random init"]
        lines.append(f"| {factor} | {t['classes']} | {100 * t['linear_top1']:.1f} | {100 * r['linear_top1']:.1f} "
                     f"| {100 * t['knn_top1']:.1f} | {100 * r['knn_top1']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    from mlvgm.checkpoint import load_checkpoint
    from mlvgm.cli import ArgumentParser, resolve_device
    from mlvgm.io import atomic_write_text
    from mlvgm.train import build_method, load_run_config

    parser = ArgumentParser(prog="python -m mlvgm.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run folder written by python -m mlvgm.train")
    parser.add_argument("--data", default=None, help="evaluate on this ImageFolder (train/ and val/) instead")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    run_dir = Path(args.run)
    config, _ = load_run_config(run_dir, **({"source": "imagefolder", "data": args.data} if args.data else {}))
    device = resolve_device(args.device)
    method = build_method(config).to(device)
    load_checkpoint(run_dir, method)
    table = evaluate_method(config, method, device=device)
    atomic_write_text(run_dir / "probes.csv", table.to_csv(index=False))
    atomic_write_text(run_dir / "probes.md", probes_markdown(table) + "\n")
    print(probes_markdown(table))


if __name__ == "__main__":
    import sys

    from mlvgm.cli import run

    sys.exit(run(main, "python -m mlvgm.evaluate"))
