"""Probes over frozen features: what an encoder's representation tells apart, by linear probe and kNN.

Pure functions of backbones and labelled images; they know nothing of training configs or runs
(mlvgm.evaluate puts them together for a run):

- `generated_probe_set(g, n, ...)`: images of a generator with ground-truth factors (the shapes world),
  drawn from a held-out latent stream, labelled by each factor; `folder_probe_set(root, split, ...)`:
  an image folder's split, labelled by class (what `mlvgm.data.export` writes, or ImageNet's).
- `linear_probe`: softmax regression, SGD with momentum 0.9 and cosine decay, no weight decay (the
  paper's protocol), on standardised features.
- `knn_accuracy`: k = 20, cosine similarity, votes weighted by exp(sim / 0.07) (Wu et al. 2018, InstDisc).
Both report top-1 and top-5 accuracy. `evaluate_backbones` runs both for every factor and encoder.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import datasets

from mlvgm.augment import PixelAugment
from mlvgm.data.sources import folder_resolution, folder_transform
from mlvgm.errors import InputError
from mlvgm.progress import Progress
from mlvgm.streams import Stream

_log = logging.getLogger(__name__)

KNN_K = 20
KNN_TEMPERATURE = 0.07


@torch.no_grad()
def extract_features(
    backbone: nn.Module, images: Tensor, *, batch: int = 256, device=None, progress: Progress | None = None
) -> Tensor:
    """(N, F) float32 features of normalised (N, 3, S, S) images, in eval mode; `progress` counts images."""
    was_training = backbone.training
    backbone.eval()
    device = device or next(backbone.parameters()).device
    out = []
    for i in range(0, len(images), batch):
        out.append(backbone(images[i : i + batch].to(device)).float().cpu())
        if progress is not None:
            progress.update(len(out[-1]))
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
    """(images (n, 3, size, size) normalised, {"class": labels}, number of classes) of root/split; size 0: the
    short side of its first image."""
    folder = root / split
    if not folder.is_dir():
        raise InputError(f"{folder} does not exist: evaluation needs {root}/train and {root}/val class folders")
    size = size or folder_resolution(folder)
    dataset = datasets.ImageFolder(str(folder), transform=folder_transform(size), allow_empty=True)
    to_input = PixelAugment("none", size)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]).float() / 255.0
    labels = torch.tensor(dataset.targets)
    return to_input(images), {"class": labels}, len(dataset.classes)


def evaluate_backbones(
    backbones: dict[str, nn.Module],  # name ("trained", "random init") -> backbone
    train: tuple[Tensor, dict[str, Tensor]],  # (images, {factor: labels}) the probes are fitted on
    test: tuple[Tensor, dict[str, Tensor]],  # (images, {factor: labels}) they are scored on
    classes: dict[str, int],  # factor -> number of classes
    *,
    device,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per (factor, encoder): linear and kNN top-1/top-5."""
    rows = []
    images = len(backbones) * (len(train[0]) + len(test[0]))
    _log.info(f"probing {', '.join(backbones)}: features of {len(train[0]):,} + {len(test[0]):,} images, "
              f"linear and kNN probes for {', '.join(classes)}")  # fmt: skip
    bar = Progress(images + len(backbones) * len(classes), desc="evaluate", unit="item", enabled=progress)
    for name, backbone in backbones.items():
        train_f = extract_features(backbone, train[0], device=device, progress=bar)
        test_f = extract_features(backbone, test[0], device=device, progress=bar)
        for factor, count in classes.items():
            y, y_test = train[1][factor], test[1][factor]
            lin1, lin5 = linear_probe(train_f, y, test_f, y_test, count, seed=seed)
            knn1, knn5 = knn_accuracy(train_f, y, test_f, y_test, count)
            rows.append({"factor": factor, "encoder": name, "classes": count,
                         "linear_top1": round(lin1, 4), "linear_top5": round(lin5, 4),
                         "knn_top1": round(knn1, 4), "knn_top5": round(knn5, 4)})  # fmt: skip
            bar.update(1)
    bar.close()
    return pd.DataFrame(rows)


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
