"""The judge of `python -m mlvgm.zoo.evidence`: a classifier trained on real shapes-world images only, with a
head per ground-truth factor (shape, position, colour, background), whose pooled features are the space the
Frechet distance and precision/recall are measured in (mlvgm.zoo.fidelity). The shape head has a trunk of its
own; the other three share one.

`ReadFactors` wraps any generator of shapes-world-like images so that the classifier reads its factors: it
then speaks the Labelled protocol, and mlvgm.view_audit measures its flip rates as it does the shapes
world's ground truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlvgm.generators.base import accepts_draws, sample_anchors
from mlvgm.generators.shapes import FACTOR_CLASSES
from mlvgm.progress import Progress
from mlvgm.streams import Stream

BATCH = 128  # real images per classifier step
HELD_OUT_BATCHES = 32


def trunk(width: int) -> tuple[nn.Sequential, int]:
    """Four conv blocks, 32 px -> 2 px: (the blocks, their output channels)."""
    layers: list[nn.Module] = []
    channels = 3
    for out in (width, 2 * width, 4 * width, 4 * width):
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.GELU(), nn.MaxPool2d(2)]
        channels = out
    return nn.Sequential(*layers), channels


class FactorClassifier(nn.Module):
    """Two trunks of four conv blocks, each average-pooled: one for the shape head alone, one shared by the other
    factors' heads (a single shared trunk read real shapes at 0.86, under the 0.93 of a shape-only network, and
    real images' mean confidence fell under the 0.80 threshold: docs/embedded.md). The features are both
    trunks' pooled values side by side. Calling it gives the shape head's logits."""

    def __init__(self, factor_classes: Mapping[str, int] = FACTOR_CLASSES, width: int = 32) -> None:
        super().__init__()
        groups = [[n for n in factor_classes if n == "shape"], [n for n in factor_classes if n != "shape"]]
        self.groups = [g for g in groups if g]
        self.trunks = nn.ModuleList()
        self.heads = nn.ModuleDict()
        for group in self.groups:
            body, channels = trunk(width)
            self.trunks.append(body)
            self.heads.update({name: nn.Linear(channels, factor_classes[name]) for name in group})
        self.feature_dim = channels * len(self.groups)

    def read(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(features (B, feature_dim), each head's logits) of images (B, 3, R, R) in [0, 1]."""
        if x.shape[-1] != 32:
            x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        pooled, logits = [], {}
        for group, body in zip(self.groups, self.trunks, strict=True):
            h = body(x * 2 - 1).mean(dim=(2, 3))
            pooled.append(h)
            logits.update({name: self.heads[name](h) for name in group})
        return torch.cat(pooled, dim=1), logits

    def features(self, x: Tensor) -> Tensor:
        return self.read(x)[0]

    def logits(self, x: Tensor) -> dict[str, Tensor]:
        return self.read(x)[1]

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(x)["shape"]


def real_batch(world, stream: Stream, step: int, n: int, truncation: float) -> tuple[Tensor, dict[str, Tensor]]:
    """(images, factors) of batch `step` of the shapes world."""
    with torch.no_grad():
        z = sample_anchors(world, n, truncation=truncation, generator=stream.at(step))
        return world(z), world.factors(z)


def train_classifier(world, *, steps: int, truncation: float, seed: int,
                     device: torch.device) -> tuple[FactorClassifier, dict[str, float]]:  # fmt: skip
    """The classifier (eval mode) and its top-1 accuracy per factor on 4,096 held-out real images."""
    torch.manual_seed(seed)
    model = FactorClassifier(world.factor_classes).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    stream = Stream(seed, purpose="zoo-classifier")
    bar = Progress(steps, desc="classifier", unit="step")
    for step in range(steps):
        x, y = real_batch(world, stream, step, BATCH, truncation)
        loss = sum(F.cross_entropy(out, y[name]) for name, out in model.logits(x).items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.update(1, loss=float(loss.detach()))
    bar.close()
    model.eval()
    held_out = Stream(seed, purpose="zoo-classifier-test")
    correct = dict.fromkeys(model.heads, 0)
    with torch.no_grad():
        for b in range(HELD_OUT_BATCHES):
            x, y = real_batch(world, held_out, b, BATCH, truncation)
            for name, out in model.logits(x).items():
                correct[name] += int((out.argmax(1) == y[name]).sum())
    return model, {name: c / (HELD_OUT_BATCHES * BATCH) for name, c in correct.items()}


class ReadFactors(nn.Module):
    """Generator g, with the factors of its images as `classifier` reads them (the Labelled protocol)."""

    def __init__(self, g: nn.Module, classifier: FactorClassifier) -> None:
        super().__init__()
        self.g, self.classifier = g, classifier
        self.level_dims, self.level_names = g.level_dims, getattr(g, "level_names", ())
        self.factor_classes = {name: head.out_features for name, head in classifier.heads.items()}

    @property
    def device(self) -> torch.device:
        return next(self.classifier.parameters()).device

    @accepts_draws
    def sample_latents(self, n: int, **kwargs) -> list[Tensor]:
        return sample_anchors(self.g, n, **kwargs)  # g's own anchors, whatever the random source

    def forward(self, latents: Sequence[Tensor]) -> Tensor:
        return self.g(latents)

    @torch.no_grad()
    def factors(self, latents: Sequence[Tensor]) -> dict[str, Tensor]:
        n, out = latents[0].shape[0], {}
        for i in range(0, n, 256):
            for name, logits in self.classifier.logits(self.g([z[i : i + 256] for z in latents]).float()).items():
                out.setdefault(name, []).append(logits.argmax(1))
        return {name: torch.cat(parts) for name, parts in out.items()}
