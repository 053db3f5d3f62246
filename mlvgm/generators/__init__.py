"""Generators and the registry that turns a spec string into one: `load_generator("shapes")`.

A spec is `NAME` or `NAME:ARGUMENT`; what the argument means is up to the generator (options such as
`shapes:resolution=32`, or a checkpoint path). Register your own with `register_generator`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mlvgm.errors import InputError
from mlvgm.generators.base import MLVGM, level_label, resolve_levels
from mlvgm.generators.shapes import ShapesWorld


@dataclass(frozen=True)
class _Entry:
    factory: Callable[[str], torch.nn.Module]  # the part of the spec after "NAME:" ("" when absent)
    usage: str  # how the spec is written, shown in errors and --help


_REGISTRY: dict[str, _Entry] = {}


def register_generator(name: str, factory: Callable[[str], torch.nn.Module], *, usage: str | None = None) -> None:
    """Make `load_generator("NAME[:ARGUMENT]")` call `factory(ARGUMENT)`."""
    if not name or ":" in name:
        raise InputError(f"a generator name must be non-empty and contain no ':', got {name!r}")
    _REGISTRY[name] = _Entry(factory, usage or name)


def available_generators() -> list[str]:
    """How each registered spec is written, e.g. ['shapes[:resolution=N]']."""
    return [entry.usage for entry in _REGISTRY.values()]


def parse_options(name: str, argument: str, allowed: dict[str, type]) -> dict[str, object]:
    """'key=value,key=value' -> {key: allowed[key](value)}, with one-line errors for anything else."""
    options: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in argument.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in allowed:
            valid = ", ".join(f"{k}=<{t.__name__}>" for k, t in allowed.items())
            raise InputError(f"bad option {item!r} in generator spec {name!r}: valid options are {valid}")
        try:
            options[key] = allowed[key](value)
        except ValueError:
            raise InputError(
                f"option {key} of generator {name!r} must be {allowed[key].__name__}, got {value!r}"
            ) from None
    return options


def load_generator(spec: str, *, device: torch.device | str | None = None) -> torch.nn.Module:
    """The generator a spec names, in eval mode with gradients off for its weights, on `device`."""
    if not isinstance(spec, str):
        raise InputError(f"a generator spec must be a string, got {type(spec).__name__}")
    name, _, argument = spec.partition(":")
    entry = _REGISTRY.get(name.strip())
    if entry is None:
        raise InputError(f"unknown generator spec {spec!r}: valid specs are {', '.join(available_generators())}")
    g = entry.factory(argument)
    g.requires_grad_(False)
    return g.eval().to(device) if device is not None else g.eval()


def _shapes(argument: str) -> ShapesWorld:
    return ShapesWorld(**parse_options("shapes", argument, {"resolution": int}))


register_generator("shapes", _shapes, usage="shapes[:resolution=32..128]")

__all__ = [
    "MLVGM",
    "ShapesWorld",
    "available_generators",
    "level_label",
    "load_generator",
    "register_generator",
    "resolve_levels",
]
