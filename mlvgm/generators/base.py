"""The generator protocol: what every part of mlvgm needs from an MLVGM g(z_1, ..., z_n).

    level_dims   dimension of each latent level z_i, in the space where views perturb it
    resolution   images are (B, 3, resolution, resolution)
    sample_latents(n, *, truncation=None, generator=None) -> list of n anchors per level
    forward(latents) -> (n, 3, H, W) images in [0, 1], differentiable in every latent

Optional:
    level_names  a short name per level ("identity", "geometry", ...), usable in configs
    groups       named tuples of level indices (StyleGAN2's 16 w's in 4 groups of 4)

Levels are numbered 1..n in everything a user types (configs, CLI flags, tables), as in the paper's
z_1..z_n, and indexed 0..n-1 in code. `resolve_levels` converts the former into the latter.

A generator does not have to subclass `MLVGM`: any torch module with these attributes works, and
`mlvgm.testing.check_mlvgm` tells whether it conforms. Subclassing gives the default
`sample_latents` (standard normal per level, truncated on request) and the helpers below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from mlvgm.errors import InputError
from mlvgm.latents import RandomSource, truncated_normal


class MLVGM(nn.Module):
    """Base class for multiple-latent-variable generators (paper Definition 1)."""

    level_dims: tuple[int, ...]
    resolution: int
    level_names: tuple[str, ...] = ()
    groups: Mapping[str, tuple[int, ...]] = {}

    @property
    def num_levels(self) -> int:
        return len(self.level_dims)

    @property
    def device(self) -> torch.device:
        """Where the module's parameters and buffers live (CPU for a module with neither)."""
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def sample_latents(
        self,
        n: int,  # number of anchors
        *,
        truncation: float | None = None,  # t: |z| <= t per coordinate; None = untruncated
        generator: RandomSource = None,  # Draws, torch.Generator or None
    ) -> list[Tensor]:
        """n anchors z ~ N^t(0, 1, t): one (n, level_dims[i]) float32 tensor per level, on self.device.

        All levels come from one draw, split by level, so a Draws source spends one counter.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise InputError(f"n must be a positive integer, got {n!r}")
        z = truncated_normal((n, sum(self.level_dims)), t=truncation, generator=generator, device=self.device)
        return list(torch.split(z, list(self.level_dims), dim=1))

    # forward(latents: Sequence[Tensor]) -> Tensor is each generator's own (nn.Module requires it).


def device_of(g) -> torch.device:
    """Where generator g lives: its `device` if it has one (MLVGM does), else its first tensor's, else cpu."""
    device = getattr(g, "device", None)
    if device is not None:
        return torch.device(device)
    tensor = next(iter([*g.parameters(), *g.buffers()]), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def level_label(g, index: int) -> str:
    """'z3' or 'z3 color': how a level (0-based index) is shown to users."""
    names = tuple(getattr(g, "level_names", ()) or ())
    return f"z{index + 1} {names[index]}" if index < len(names) else f"z{index + 1}"


def _valid_levels_hint(g) -> str:
    n = len(g.level_dims)
    names = tuple(getattr(g, "level_names", ()) or ())
    groups = dict(getattr(g, "groups", {}) or {})
    hint = f"levels 1-{n}"
    if names:
        hint += " (" + ", ".join(f"{i + 1}={name}" for i, name in enumerate(names)) + ")"
    if groups:
        hint += " or groups " + ", ".join(groups)
    return hint


def resolve_levels(g, selection: int | str | Iterable[int | str] | None) -> tuple[int, ...]:
    """0-based level indices for a user's selection of 1-based levels, level names or group names.

    None selects every level. Duplicates are dropped; the order is ascending.
    """
    n = len(g.level_dims)
    if selection is None:
        return tuple(range(n))
    if isinstance(selection, int | str):
        selection = [selection]
    names = tuple(getattr(g, "level_names", ()) or ())
    groups = dict(getattr(g, "groups", {}) or {})
    out: set[int] = set()
    for item in selection:
        if isinstance(item, str) and item.strip().lstrip("-").isdigit():
            item = int(item)
        if isinstance(item, bool):
            raise InputError(f"level {item!r} is not a level: choose {_valid_levels_hint(g)}")
        if isinstance(item, int):
            if not 1 <= item <= n:
                raise InputError(f"level {item} is out of range: choose {_valid_levels_hint(g)}")
            out.add(item - 1)
        elif item in groups:
            out.update(groups[item])
        elif item in names:
            out.add(names.index(item))
        else:
            raise InputError(f"unknown level {item!r}: choose {_valid_levels_hint(g)}")
    return tuple(sorted(out))
