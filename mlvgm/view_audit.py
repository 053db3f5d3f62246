"""What a latent perturbation does to the image, measured: the paper's second phase (section 4) made a rule.

Quantification (mlvgm.quantification, phase one) says which levels not to perturb. The paper then chose
each remaining level's magnitude by looking at its effect. Here, for anchor/positive pairs that differ
only in one level, z'_i = z_i + sigma e_i with e_i ~ N^t(0, 1, t) per coordinate (the `random` views'
noise), over a grid of sigmas:

- `pixel_change`: mean |x' - x| over pixels and channels (images in [0, 1]);
- `feature_change`: mean ||f(x') - f(x)|| over mean ||f(x) - f(y)|| for unrelated anchors y, with f a
  fixed, untrained ResNet-18 (torchvision's stem, width 32, seed 0: nothing to download, and about a
  tenth of the small stem's cost at 32 px; its features are random, not semantic): 0 is the same image,
  1 as different as two unrelated ones;
- `saturated_anchor`, `saturated_positive`, `saturated_excess`: the share of pixel values at 0 or 1 (within
  half an 8-bit level), and the positives' excess over their anchors': what the clamp has destroyed;
- `flip_<factor>`: for generators that declare ground-truth `factors` (the shapes world), how often each
  factor differs between anchor and positive. Reported, never used to choose.

mlvgm.view_rule chooses the sigmas from these; `audit_views` measures a training run's own views alike.
The same anchors and the same e (one draw per level, scaled by each sigma) serve every sigma, so a
level's curve is smooth in sigma and its levels are compared on the same images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from mlvgm.encoders import backbone
from mlvgm.generators.base import device_of, labelled, level_label, sample_anchors
from mlvgm.latents import truncated_normal
from mlvgm.streams import Stream
from mlvgm.view_rule import DESTROYED

SATURATION_TOLERANCE = 0.5 / 255  # a value within half an 8-bit level of 0 or 1 is saturated
FEATURE_PIXELS = 64  # images are resized to at most this before the feature network
CHUNK = 256  # pairs rendered at once


def feature_net(device: torch.device) -> torch.nn.Module:
    """The fixed untrained network of `feature_change`: a ResNet-18 of width 32, seed 0."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net, _ = backbone("resnet18", small_stem=False, width=32)
    return net.to(device).eval().requires_grad_(False)


def saturated(images: Tensor) -> Tensor:
    """(B,) share of each image's values at 0 or 1."""
    flat = images.flatten(1)
    return ((flat <= SATURATION_TOLERANCE) | (flat >= 1 - SATURATION_TOLERANCE)).float().mean(dim=1)


def factors_of(g) -> Callable | None:
    return g.factors if labelled(g) else None


@dataclass
class Anchors:
    """The audit's anchors, rendered once: their images, features, saturation and factors."""

    latents: list[Tensor]  # per level (N, d_i)
    images: Tensor  # (N, 3, H, W) float32, on the generator's device
    features: Tensor | None  # (N, F)
    saturated: Tensor  # (N,)
    factors: dict[str, Tensor]  # name -> (N,)
    unrelated: float  # mean ||f(x) - f(y)|| over unrelated pairs (NaN without features)


@torch.no_grad()
def render(g, latents: Sequence[Tensor]) -> Tensor:
    """g's images of `latents`, CHUNK at a time, as float32 in [0, 1]."""
    n = latents[0].shape[0]
    return torch.cat([g([z[i : i + CHUNK] for z in latents]).float() for i in range(0, n, CHUNK)])


@torch.no_grad()
def embed(net: torch.nn.Module | None, images: Tensor) -> Tensor | None:
    if net is None:
        return None
    out = []
    for i in range(0, images.shape[0], CHUNK):
        x = images[i : i + CHUNK]
        if max(x.shape[-2:]) > FEATURE_PIXELS:
            x = F.interpolate(x, size=(FEATURE_PIXELS, FEATURE_PIXELS), mode="bilinear", antialias=True)
        out.append(net(x * 2 - 1).float())
    return torch.cat(out)


def make_anchors(g, pairs: int, *, truncation: float, seed: int, net: torch.nn.Module | None) -> Anchors:
    latents = sample_anchors(g, pairs, truncation=truncation, generator=Stream(seed, purpose="audit-anchors").at(0))
    images = render(g, latents)
    features = embed(net, images)
    unrelated = math.nan
    if features is not None:  # each anchor against the next: pairs of unrelated images
        unrelated = float((features - features.roll(1, dims=0)).norm(dim=1).mean())
    find = factors_of(g)
    factors = {k: v.cpu() for k, v in find(latents).items()} if find else {}
    return Anchors(latents, images, features, saturated(images), factors, unrelated)


@torch.no_grad()
def measure(g, anchors: Anchors, positives: Sequence[Tensor], net: torch.nn.Module | None) -> dict[str, float]:
    """The audit's numbers for anchors -> positives (latents, per level)."""
    images = render(g, positives)
    sat = saturated(images)
    row = {
        "pixel_change": float((images - anchors.images).abs().mean()),
        "feature_change": math.nan,
        "saturated_anchor": float(anchors.saturated.mean()),
        "saturated_positive": float(sat.mean()),
        "saturated_excess": float((sat - anchors.saturated).mean()),
    }
    features = embed(net, images)
    if features is not None and anchors.unrelated > 0:
        row["feature_change"] = float((features - anchors.features).norm(dim=1).mean()) / anchors.unrelated
    find = factors_of(g)
    if find and anchors.factors:
        for name, value in find(list(positives)).items():
            row[f"flip_{name}"] = float((value.cpu() != anchors.factors[name]).float().mean())
    return row


def level_noise(g, anchors: Anchors, levels: Sequence[int], *, t: float, seed: int) -> list[Tensor]:
    """e per level of a unit: N^t(0, 1, t) per coordinate, one draw per unit (its first level names it)."""
    source = Stream(seed, purpose="audit-noise").at(levels[0])
    n = anchors.latents[0].shape[0]
    total = sum(g.level_dims[i] for i in levels)
    e = truncated_normal((n, total), t=t, generator=source, device=device_of(g))
    return list(torch.split(e, [g.level_dims[i] for i in levels], dim=1))


def perturbed(latents: Sequence[Tensor], levels: Sequence[int], noise: Sequence[Tensor], sigma: float) -> list[Tensor]:
    positives = list(latents)
    for i, e in zip(levels, noise, strict=True):
        positives[i] = positives[i] + sigma * e.to(positives[i].dtype)
    return positives


def sweep(g, anchors: Anchors, units: dict[str, Sequence[int]], sigmas: Sequence[float], *, t: float, seed: int,
          net: torch.nn.Module | None, progress: Callable[[], None] = lambda: None) -> pd.DataFrame:  # fmt: skip
    """One row per (unit, sigma): the audit's numbers, with the unit's label and its mean ||w||."""
    rows = []
    for label, levels in units.items():
        noise = level_noise(g, anchors, levels, t=t, seed=seed)
        norm = float(torch.cat(noise, dim=1).norm(dim=1).mean())
        for sigma in sigmas:
            positives = perturbed(anchors.latents, levels, noise, sigma)
            rows.append({"level": label, "sigma": float(sigma), "norm": sigma * norm,
                         **measure(g, anchors, positives, net)})  # fmt: skip
            progress()
    return pd.DataFrame(rows)


def sheet(g, anchors: Anchors, levels: Sequence[int], sigmas: Sequence[float], *, t: float, seed: int,
          rows: int) -> Tensor:  # fmt: skip
    """(rows, 1 + len(sigmas), 3, H, W): the first `rows` anchors, then each with the level moved by each sigma."""
    noise = [e[:rows] for e in level_noise(g, anchors, levels, t=t, seed=seed)]
    head = [z[:rows] for z in anchors.latents]
    columns = [anchors.images[:rows]] + [render(g, perturbed(head, levels, noise, s)) for s in sigmas]
    return torch.stack(columns, dim=1).cpu()


# --- a training run's own views ------------------------------------------------------------------------


@torch.no_grad()
def audit_views(g, views, *, pairs: int = 512, truncation: float = 2.0, seed: int = 0) -> dict[str, object]:
    """The audit's numbers (no feature network) for a T_z strategy `views` (mlvgm.view_strategies) on `pairs`
    anchors of its own stream, so the run's data are not touched; `destroyed` when over DESTROYED of the
    positives' pixels are saturated beyond their anchors'."""
    anchors = make_anchors(g, pairs, truncation=truncation, seed=seed, net=None)
    generator = torch.Generator(device=device_of(g)).manual_seed(Stream(seed, purpose="audit-views").key)
    made = views(anchors.latents, generator=generator)
    row = measure(g, anchors, made.positives, None)
    row.pop("feature_change")
    norms = made.norms.float().mean(dim=0).tolist()
    row["norm_per_level"] = {level_label(g, i): float(v) for i, v in enumerate(norms)}
    row.update(pairs=pairs, destroyed=row["saturated_excess"] > DESTROYED)
    return row


def views_line(row: dict[str, object]) -> str:
    """One line of what a run's views do to its images."""
    flips = ", ".join(f"{k[5:]} {v:.0%}" for k, v in row.items() if k.startswith("flip_"))
    text = (f"views: positives change {row['pixel_change']:.3f} of the pixel range on average; saturated pixels "
            f"{row['saturated_positive']:.1%} against the anchors' {row['saturated_anchor']:.1%}")  # fmt: skip
    return text + (f"; factors changed: {flips}" if flips else "") + f" ({row['pairs']} pairs)"
