"""`--views learned`: the walkers `python -m mlvgm.quantify` trained (Li et al. 2022), on the chosen levels:
per-level walkers make the multi-level learned views, one walker over every level (--single true) Li et al.'s
single-latent baseline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from mlvgm.errors import InputError
from mlvgm.generators.base import device_of, level_label, resolve_levels
from mlvgm.latents import RandomSource
from mlvgm.plugins import ViewStrategy, register_views
from mlvgm.view_strategies import LevelSelection, Views
from mlvgm.walkers import LevelWalkers


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


def check_walkers(config) -> None:
    """--walkers names a walkers file that exists: before any work."""
    if not config.walkers:
        raise InputError("--views learned needs --walkers PATH: the walkers.safetensors python -m mlvgm.quantify "
                         "writes (--single true for the single-latent baseline)")  # fmt: skip
    if not (walkers := Path(config.walkers).with_suffix(".safetensors")).exists():
        raise InputError(f"walkers file {walkers} does not exist: run python -m mlvgm.quantify --out DIR")


def from_config(config, g) -> LearnedViews:
    levels = [int(level) if level.isdigit() else level for level in config.view_levels]
    return LearnedViews(g, config.walkers, levels)


register_views(ViewStrategy("learned", build=from_config, keys=("walkers", "view_levels"), check=check_walkers))
