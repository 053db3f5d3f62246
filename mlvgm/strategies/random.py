"""`--views random`: per-level truncated Gaussian noise, w_i ~ N^t(mu_i, sigma_i, t_i) on the chosen levels
(Jahanian et al. 2021, per level as in the paper's section 3.2), through the fused kernel mlvgm.kernels.perturb;
with the multi-level options, each level of a sample perturbed with probability p, its sigma drawn from a range."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mlvgm.errors import InputError
from mlvgm.generators.base import device_of, level_label, resolve_levels
from mlvgm.kernels.dispatch import IMPLS
from mlvgm.kernels.perturb import LevelParams, perturb, perturb_reference
from mlvgm.latents import RandomSource
from mlvgm.plugins import ViewStrategy, register_views
from mlvgm.streams import Draws
from mlvgm.view_strategies import LevelNoise, LevelSelection, Views


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


def from_config(config, g) -> RandomViews:
    """The RandomViews of a training config: view_levels with view_sigma (one for all, or one per level), view_t,
    and the multi-level options view_sigma_max and view_p."""

    def per_level(values: tuple) -> tuple:  # one value for all levels, or one per level (checked by the config)
        return values * len(config.view_levels) if len(values) == 1 else values

    sigmas = per_level(config.view_sigma)
    tops = per_level(config.view_sigma_max) if config.view_sigma_max else (None,) * len(sigmas)
    noise = {}
    for level, sigma, top in zip(config.view_levels, sigmas, tops, strict=True):
        noise[int(level) if level.isdigit() else level] = LevelNoise(
            sigma=sigma, t=config.view_t, sigma_max=top, p=config.view_p
        )
    return RandomViews(g, noise, impl=config.kernels)


register_views(ViewStrategy(
    "random", build=from_config, keys=("view_levels", "view_sigma", "view_t", "view_sigma_max", "view_p", "kernels"),
    kernels=("perturb",),
))  # fmt: skip
