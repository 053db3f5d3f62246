"""The generator protocol: what every part of mlvgm needs from an MLVGM g(z_1, ..., z_n).

    level_dims   dimension of each latent level z_i, in the space where views perturb it
    resolution   images are (B, 3, resolution, resolution)
    sample_latents(n, *, truncation=None, generator=None) -> list of n anchors per level
    forward(latents) -> (n, 3, H, W) images in [0, 1], differentiable in every latent

Optional:
    level_names  a short name per level ("identity", "geometry", ...), usable in configs
    groups       named tuples of level indices (StyleGAN2's 16 w's in 4 groups of 4)

Labelled generators (the shapes world) also declare their ground truth, the `Labelled` protocol below:
    factor_classes  {factor: number of classes}, e.g. {"shape": 12, "position": 9, ...}
    factors(latents) -> {factor: (n,) int64 class in [0, classes)} for the images forward(latents) renders
Evaluation probes these factors, the view audit counts how often a view flips them, and `labelled(g)` tells.

Levels are numbered 1..n in everything a user types (configs, CLI flags, tables), as in the paper's
z_1..z_n, and indexed 0..n-1 in code. `resolve_levels` converts the former into the latter.

A generator does not have to subclass `MLVGM`: any torch module with these attributes works, and
`mlvgm.testing.check_mlvgm` tells whether it conforms. Subclassing gives the default
`sample_latents` (standard normal per level, truncated on request) and the helpers below.

Random sources. mlvgm draws its numbers from counter-based streams (`mlvgm.streams.Draws`), which a
user's `sample_latents` has never heard of. The library therefore calls it through `sample_anchors`:

- a `sample_latents` marked `@accepts_draws` (the library's own) receives the `Draws` itself;
- any other receives a `torch.Generator` on the module's device, seeded from the draws (their next
  64 random bits), so `torch.randn(n, d, generator=generator)` works and runs stay reproducible;
- a module without `sample_latents` gets the default: N^t(0, 1, t) per level, drawn by the library.

`forward` should use every level; a level it ignores (no graph edge, or multiplied by 0) is not an
error but a finding: `check_mlvgm` reports it and `mlvgm.quantify` calls it under-used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from mlvgm.errors import InputError
from mlvgm.latents import RandomSource, truncated_normal
from mlvgm.streams import Draws


def accepts_draws(method: Callable) -> Callable:
    """Mark a `sample_latents` that takes an `mlvgm.streams.Draws` as its generator (see `sample_anchors`)."""
    method.accepts_draws = True
    return method


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

    @accepts_draws
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
        return default_latents(self, n, truncation=truncation, generator=generator)

    # forward(latents: Sequence[Tensor]) -> Tensor is each generator's own (nn.Module requires it).


@runtime_checkable
class Labelled(Protocol):
    """A generator with ground-truth factors per image (see the module docstring)."""

    factor_classes: Mapping[str, int]

    def factors(self, latents: Sequence[Tensor]) -> dict[str, Tensor]: ...


def labelled(g) -> bool:
    """Whether g declares the Labelled protocol: a `factors` method and a `factor_classes` mapping."""
    return callable(getattr(g, "factors", None)) and isinstance(getattr(g, "factor_classes", None), Mapping)


def default_latents(g, n: int, *, truncation: float | None = None, generator: RandomSource = None) -> list[Tensor]:
    """n anchors z ~ N^t(0, 1, t) per level of g, from one draw split by level (a Draws spends one counter)."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise InputError(f"n must be a positive integer, got {n!r}")
    z = truncated_normal((n, sum(g.level_dims)), t=truncation, generator=generator, device=device_of(g))
    return list(torch.split(z, list(g.level_dims), dim=1))


def sample_anchors(g, n: int, *, truncation: float | None = None, generator: RandomSource = None) -> list[Tensor]:
    """g's n anchors from any random source: how the library calls a generator's `sample_latents`.

    A `Draws` reaches only a `sample_latents` marked `@accepts_draws`; any other gets a torch.Generator
    seeded from the draws, and a module without `sample_latents` gets `default_latents`.
    """
    sample = getattr(g, "sample_latents", None)
    if sample is None:
        return default_latents(g, n, truncation=truncation, generator=generator)
    if isinstance(generator, Draws) and not getattr(sample, "accepts_draws", False):
        generator = torch_generator(generator, device_of(g))
    return sample(n, truncation=truncation, generator=generator)


def torch_generator(draws: Draws, device: torch.device | str) -> torch.Generator:
    """A torch.Generator on `device` seeded with the next 63 bits of `draws`: the same draws, the same numbers."""
    low, high = draws.uint32(2).tolist()
    return torch.Generator(device=device).manual_seed((high & 0x7FFFFFFF) << 32 | low)


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
