"""Latent-space view strategies T_z: anchors z = (z_1, ..., z_n) -> positives z' = (z_1 + w_1, ..., z_n + w_n).

- `NoViews` (`none`): z' = z; the two views of a pair differ only by T_x in pixel space.
- `RandomViews` (`random`, Jahanian et al. 2021, per level as in the paper's section 3.2): w_i ~ N^t(mu_i,
  sigma_i, t_i) on the chosen levels, through the fused kernel mlvgm.kernels.perturb.
- `LearnedViews` (`learned`, Li et al. 2022): the walkers mlvgm.quantify trained.

Every strategy returns `Views(anchors, positives, norms)`. mlvgm.views documents them and re-exports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mlvgm.errors import InputError
from mlvgm.generators.base import device_of, level_label, resolve_levels
from mlvgm.kernels.dispatch import IMPLS
from mlvgm.kernels.perturb import LevelParams, perturb, perturb_reference
from mlvgm.latents import RandomSource
from mlvgm.streams import Draws
from mlvgm.walkers import LevelWalkers

LevelSelection = int | str | Iterable[int | str] | None


@dataclass
class Views:
    """A batch of anchor/positive latent pairs."""

    anchors: list[Tensor]  # per level (B, d_i)
    positives: list[Tensor]  # per level (B, d_i)
    norms: Tensor  # (B, n_levels): ||positive_i - anchor_i||_2, 0 on untouched levels


@dataclass(frozen=True)
class LevelNoise:
    """Per-coordinate perturbation w ~ N^t(mu, sigma, t) of one level, optionally applied with
    probability p per sample and with sigma drawn per sample from U(sigma, sigma_max) (multi-level option)."""

    sigma: float  # standard deviation (>= 0); the lower end of the range when sigma_max is set
    mu: float = 0.0  # mean
    t: float | None = 2.0  # truncation in units of sigma (> 0), None = untruncated
    sigma_max: float | None = None  # upper end of a per-sample sigma range; None = fixed sigma
    p: float = 1.0  # probability that a sample's level is perturbed at all

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise InputError(f"sigma must be >= 0, got {self.sigma}: use a non-negative standard deviation")
        if self.t is not None and not self.t > 0:
            raise InputError(f"truncation t must be > 0 (in units of sigma), got {self.t}: use None for no truncation")
        if self.sigma_max is not None and not self.sigma_max >= self.sigma:
            raise InputError(f"sigma_max must be >= sigma ({self.sigma}), got {self.sigma_max}")
        if not 0 <= self.p <= 1:
            raise InputError(f"probability p must be in [0, 1], got {self.p}")


class NoViews:
    """T_z = identity: positives are the anchors."""

    name = "none"

    def __init__(self, g) -> None:
        self.num_levels = len(g.level_dims)

    def __call__(self, anchors: Sequence[Tensor], generator: RandomSource = None) -> Views:
        anchors = list(anchors)
        norms = anchors[0].new_zeros((anchors[0].shape[0], self.num_levels))
        return Views(anchors, list(anchors), norms)


class RandomViews:
    """T_z(z)_i = z_i + w_i, w_i ~ N^t(mu_i, sigma_i, t_i) on the chosen levels (Jahanian et al. 2021).

    g:     the generator (its level_dims, level_names and groups resolve `noise`)
    noise: {level or group (1-based number or name): LevelNoise}; levels not named are not perturbed
    impl:  kernel for counter-based sources (mlvgm.kernels.perturb): "auto" | "torch" | "compiled" | "triton";
           a torch.Generator source always runs the torch ops (the kernels reproduce Philox streams only)
    """

    name = "random"

    def __init__(self, g, noise: Mapping[int | str, LevelNoise], *, impl: str = "auto") -> None:
        if not noise:
            raise InputError("random views need at least one level to perturb: name levels or groups")
        if impl not in IMPLS:
            raise InputError(f"unknown perturbation impl {impl!r}: choose one of {', '.join(IMPLS)}")
        self.level_dims = tuple(g.level_dims)
        self.impl = impl
        per_level: dict[int, LevelNoise] = {}
        for selection, level_noise in noise.items():
            if not isinstance(level_noise, LevelNoise):
                raise InputError(
                    f"noise for level {selection!r} must be a LevelNoise, got {type(level_noise).__name__}"
                )
            for i in resolve_levels(g, selection):
                if i in per_level and per_level[i] != level_noise:
                    raise InputError(f"level {level_label(g, i)} is given two different noises: name it once")
                per_level[i] = level_noise
        self.noise = dict(sorted(per_level.items()))  # 0-based level -> LevelNoise
        untouched = LevelNoise(sigma=0.0, t=None)  # w = 0 exactly
        levels = [self.noise.get(i, untouched) for i in range(len(self.level_dims))]
        self.params = LevelParams(
            level_dims=self.level_dims,
            mu=tuple(n.mu for n in levels),
            sigma=tuple(n.sigma for n in levels),
            sigma_max=tuple(n.sigma if n.sigma_max is None else n.sigma_max for n in levels),
            t=tuple(float("inf") if n.t is None else n.t for n in levels),
            p=tuple(n.p for n in levels),
        )
        self.params.on(device_of(g))  # built before any compiled step traces it

    @classmethod
    def uniform(
        cls, g, levels: LevelSelection = None, *, sigma: float, mu: float = 0.0, t: float | None = 2.0,
        sigma_max: float | None = None, p: float = 1.0, impl: str = "auto",
    ):  # fmt: skip
        """The same noise on every chosen level (all levels when `levels` is None)."""
        noise = LevelNoise(sigma=sigma, mu=mu, t=t, sigma_max=sigma_max, p=p)
        return cls(g, {i + 1: noise for i in resolve_levels(g, levels)}, impl=impl)

    def perturbation(self, batch: int, *, generator: RandomSource = None, device=None) -> Tensor:
        """w: (batch, D) perturbation of all levels at once, zero on untouched levels."""
        return self._perturb(torch.zeros(batch, sum(self.level_dims), device=device), generator)[0]

    def _perturb(self, z: Tensor, generator: RandomSource) -> tuple[Tensor, Tensor]:
        """(z + w, per-level ||w||) for z (B, D): the fused kernel for a Philox stream, torch ops otherwise."""
        if isinstance(generator, Draws):
            return perturb(z, self.params, generator, impl=self.impl)
        return perturb_reference(z, self.params, generator)

    def __call__(self, anchors: Sequence[Tensor], generator: RandomSource = None) -> Views:
        anchors = list(anchors)
        positives, norms = self._perturb(torch.cat(anchors, dim=1), generator)  # (B, D), (B, L)
        return Views(anchors, list(torch.split(positives, list(self.level_dims), dim=1)), norms)


class LearnedViews:
    """T_z = the trained walkers (mlvgm.walkers, from mlvgm.quantify) on the chosen levels: the paper's
    *learned* strategy (Li et al. 2022). Per-level walkers make the multi-level learned views; walkers
    trained with single=True (one over every level) make Li et al.'s single-latent baseline.

    g:       the generator the walkers were trained on
    walkers: a LevelWalkers, or the path its `save` wrote
    levels:  apply the units whose levels are all among these (1-based numbers, names or groups);
             None = every unit
    """

    name = "learned"

    def __init__(self, g, walkers, levels: LevelSelection = None) -> None:
        if not isinstance(walkers, LevelWalkers):
            walkers = LevelWalkers.load(walkers, g)
        device = device_of(g)
        self.walkers = walkers.to(device).eval().requires_grad_(False)  # on the generator's device
        self.num_levels = len(g.level_dims)
        if levels is None:
            self.units = list(range(len(walkers)))
        else:
            chosen = set(resolve_levels(g, levels))
            self.units = [k for k, unit in enumerate(walkers.units) if set(unit) <= chosen]
            covered = {i for k in self.units for i in walkers.units[k]}
            if chosen - covered:
                missing = level_label(g, min(chosen - covered))
                raise InputError(
                    f"no walker acts on level {missing} alone: the walkers' units are "
                    f"{', '.join(walkers.labels)}; choose levels that make whole units"
                )
        if not self.units:
            raise InputError("learned views need at least one walker unit to apply")

    def __call__(self, anchors: Sequence[Tensor], generator: RandomSource = None) -> Views:
        anchors = list(anchors)
        positives = list(anchors)
        with torch.no_grad():
            for k in self.units:  # units are disjoint: each replaces its own levels
                moved = self.walkers.perturb(anchors, k)
                for i in self.walkers.units[k]:
                    positives[i] = moved[i]
            norms = torch.stack([(p - a).norm(dim=1) for p, a in zip(positives, anchors, strict=True)], dim=1)
        return Views(anchors, positives, norms)
