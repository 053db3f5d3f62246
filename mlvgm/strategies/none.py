"""`--views none`: T_z is the identity, so the two views of a pair differ only by T_x (the paper's "synth")."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from mlvgm.latents import RandomSource
from mlvgm.plugins import ViewStrategy, register_views
from mlvgm.view_strategies import Views


class NoViews:
    """T_z = identity: positives are the anchors."""

    name = "none"

    def __init__(self, g) -> None:
        self.num_levels = len(g.level_dims)

    def __call__(self, anchors: Sequence[Tensor], generator: RandomSource = None) -> Views:
        anchors = list(anchors)
        norms = anchors[0].new_zeros((anchors[0].shape[0], self.num_levels))
        return Views(anchors, list(anchors), norms)


register_views(ViewStrategy("none", build=lambda config, g: NoViews(g)))
