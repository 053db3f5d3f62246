"""Probes over frozen features: what an encoder's representation tells apart, by linear probe and kNN.

Pure functions of backbones and labelled images; they know nothing of training configs or runs
(mlvgm.evaluate puts them together for a run):

- `generated_probe_set(g, n, ...)`: images of a generator with ground-truth factors (the shapes world),
  drawn from a held-out latent stream, labelled by each factor; `folder_probe_set(root, split, ...)`:
  an image folder's split, labelled by class (what `mlvgm.data.export` writes, or ImageNet's).
- `linear_probe`: softmax regression on standardised features, its weight decay chosen from a small grid on a
  validation split of the train features and refitted on all of them (full-batch L-BFGS: the problem is
  convex, so the answer is the regularised optimum, not where an SGD schedule stopped).
- `knn_accuracy`: k = 20, cosine similarity, votes weighted by exp(sim / 0.07) (Wu et al. 2018, InstDisc).
Both report top-1 and top-5 accuracy. `evaluate_backbones` runs both for every factor and encoder.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlvgm.augment import PixelAugment
from mlvgm.data.sources import folder_resolution, folder_transform, image_folder
from mlvgm.errors import InputError
from mlvgm.options import PROBE_VAL_SHARE, PROBE_WEIGHT_DECAYS, check_probe_options
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
    check_finite(train, what="kNN train features")
    check_finite(test, what="kNN test features")
    train, test = F.normalize(train.float(), dim=1), F.normalize(test.float(), dim=1)
    k = min(k, len(train))
    scores = []
    for i in range(0, len(test), chunk):
        sim, index = (test[i : i + chunk] @ train.T).topk(k, dim=1)  # (m, k)
        votes = torch.zeros(len(index), classes).scatter_add_(1, train_labels[index], (sim / temperature).exp())
        scores.append(votes)
    return _topk(torch.cat(scores), test_labels, require_positive=True)


class LinearProbe(NamedTuple):
    top1: float
    top5: float
    weight_decay: float  # the one chosen on the validation split, with which the reported probe was refitted


class NonFiniteFeatures(InputError):
    """Features with NaN or infinities: the encoder diverged, and no accuracy read off them means anything."""


def check_finite(features: Tensor, *, what: str = "features") -> Tensor:
    """`features`, or NonFiniteFeatures naming how many rows are not finite (a diverged encoder's NaN would
    otherwise score as a hit: NaN is never larger than the true class's score)."""
    bad = int((~torch.isfinite(features.reshape(len(features), -1))).any(dim=1).sum())
    if bad:
        raise NonFiniteFeatures(
            f"{what}: {bad:,} of {len(features):,} rows are NaN or infinite, so the encoder diverged: no probe can "
            "read them; retrain with a lower --base_lr"
        )
    return features


def fit_softmax(
    x: Tensor,  # (N, F) float64 standardised features
    y: Tensor,  # (N,) int64 labels
    classes: int,
    weight_decay: float,
    *,
    init: tuple[Tensor, Tensor] | None = None,  # (W (C, F), b (C,)) to start from (the previous grid point)
    max_iter: int = 1000,
) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression: argmin over W, b of mean_i CE(W x_i + b, y_i) + wd / 2 ||W||^2 (the
    bias is not decayed, as in scikit-learn), by full-batch L-BFGS with a strong-Wolfe line search. The
    problem is strictly convex for wd > 0, so the answer depends on neither seed nor step size."""
    weight = torch.zeros(classes, x.shape[1], dtype=x.dtype) if init is None else init[0].clone()
    bias = torch.zeros(classes, dtype=x.dtype) if init is None else init[1].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-7, tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def objective() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * weight_decay * (weight * weight).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    return weight.detach(), bias.detach()


def validation_split(n: int, val_share: float, seed: int) -> tuple[Tensor, Tensor]:
    """(fit, val) indices of n train samples: a seeded shuffle, val_share of it held out (at least one each)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held = min(max(1, round(val_share * n)), n - 1)
    return order[held:], order[:held]


def linear_probe(
    train: Tensor,  # (N, F)
    train_labels: Tensor,  # (N,)
    test: Tensor,  # (M, F)
    test_labels: Tensor,  # (M,)
    classes: int,
    *,
    weight_decays: Sequence[float] = PROBE_WEIGHT_DECAYS,
    val_share: float = PROBE_VAL_SHARE,
    seed: int = 0,  # the validation split's shuffle
) -> LinearProbe:
    """Softmax regression on frozen, standardised features with its L2 penalty chosen on held-out data: each
    weight decay of the grid is fitted (fit_softmax) on a random (1 - val_share) of the train features and
    scored (top-1) on the rest; the best (ties: the larger decay, the simpler model) is refitted on all of
    them and scored on the test features. Deterministic for a seed."""
    check_probe_options(weight_decays, val_share)
    check_finite(train, what="probe train features")
    check_finite(test, what="probe test features")
    mean, std = train.double().mean(dim=0), train.double().std(dim=0) + 1e-6
    x, x_test = (train.double() - mean) / std, (test.double() - mean) / std
    fit, val = validation_split(len(x), val_share, seed)
    best, best_accuracy, init = None, -1.0, None
    for decay in sorted(weight_decays, reverse=True):  # strongest first: each fit warm-starts the next
        init = fit_softmax(x[fit], train_labels[fit], classes, decay, init=init)
        with torch.no_grad():
            accuracy = float(((x[val] @ init[0].T + init[1]).argmax(dim=1) == train_labels[val]).double().mean())
        if accuracy > best_accuracy:  # strict: a tie keeps the larger decay
            best, best_accuracy = decay, accuracy
    weight, bias = fit_softmax(x, train_labels, classes, best)
    with torch.no_grad():
        top1, top5 = _topk(x_test @ weight.T + bias, test_labels)
    return LinearProbe(top1, top5, best)


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
    dataset = image_folder(folder, transform=folder_transform(size))
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
    weight_decays: Sequence[float] = PROBE_WEIGHT_DECAYS,  # the linear probe's grid
    val_share: float = PROBE_VAL_SHARE,  # the share of the train images it is chosen on
    progress: bool = True,
) -> pd.DataFrame:
    """One row per (factor, encoder): linear top-1/top-5 with the weight decay chosen, kNN top-1/top-5."""
    check_probe_options(weight_decays, val_share)
    rows = []
    images = len(backbones) * (len(train[0]) + len(test[0]))
    _log.info(f"probing {', '.join(backbones)}: features of {len(train[0]):,} + {len(test[0]):,} images, "
              f"linear and kNN probes for {', '.join(classes)}")  # fmt: skip
    bar = Progress(images + len(backbones) * len(classes), desc="evaluate", unit="item", enabled=progress)
    for name, backbone in backbones.items():
        train_f = extract_features(backbone, train[0], device=device, progress=bar)
        test_f = extract_features(backbone, test[0], device=device, progress=bar)
        check_finite(train_f, what=f"the {name} encoder's features")
        check_finite(test_f, what=f"the {name} encoder's features")
        for factor, count in classes.items():
            y, y_test = train[1][factor], test[1][factor]
            linear = linear_probe(train_f, y, test_f, y_test, count, weight_decays=weight_decays,
                                  val_share=val_share, seed=seed)  # fmt: skip
            knn1, knn5 = knn_accuracy(train_f, y, test_f, y_test, count)
            rows.append({"factor": factor, "encoder": name, "classes": count,
                         "linear_top1": round(linear.top1, 4), "linear_top5": round(linear.top5, 4),
                         "linear_weight_decay": linear.weight_decay,
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
