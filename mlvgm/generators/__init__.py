"""Generators and the registry that turns a spec string into one: `load_generator("shapes")`.

A spec is `NAME` or `NAME:ARGUMENT`; what the argument means is up to the generator (options such as
`shapes:resolution=32`, or a checkpoint path). Register your own with `register_generator`. Each built-in
generator's module is imported when a spec names it, so that the protocol (mlvgm.generators.base) loads
without every network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mlvgm.errors import InputError
from mlvgm.generators.base import MLVGM, level_label, resolve_levels
from mlvgm.options import generator_spec


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
        if isinstance(options[key], float) and not math.isfinite(options[key]):  # nan passes every range check
            raise InputError(f"option {key} of generator {name!r} must be a finite number, got {value!r}")
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


def _shapes(argument: str) -> torch.nn.Module:
    from mlvgm.generators.shapes import ShapesWorld

    return ShapesWorld(**parse_options("shapes", argument, {"resolution": int}))


register_generator("shapes", _shapes, usage="shapes[:resolution=32..128]")


EMBEDDED_USAGE = "embedded[:temperature=F][,weights=PATH.safetensors]"


def _embedded(argument: str) -> torch.nn.Module:
    """The hierarchical VAE whose weights ship with the package (trained by mlvgm.zoo.train), or other weights."""
    from mlvgm.generators.embedded import load_embedded

    options = parse_options("embedded", argument, {"temperature": float, "weights": str})
    temperature = options.get("temperature")
    if temperature is not None and not 0 < float(temperature) <= 2:
        raise InputError(f"temperature of embedded must be in (0, 2], got {temperature}")
    return load_embedded(options.get("weights"), temperature=temperature)


register_generator("embedded", _embedded, usage=EMBEDDED_USAGE)


def _checkpoint_and_options(name: str, argument: str, usage: str, allowed: dict[str, type]) -> tuple[str, dict]:
    """'PATH[,key=value,...]' -> (PATH, options): a checkpoint spec's path, then its options."""
    path, _, rest = argument.partition(",")
    if not path.strip():
        raise InputError(f"generator {name!r} needs a checkpoint path: write {usage}")
    return path.strip(), parse_options(name, rest, allowed)


STYLEGAN2_USAGE = (
    "stylegan2:PATH.pkl[,network=G_ema][,space=w|z][,truncation_psi=F][,truncation_cutoff=N]"
    "[,noise_mode=const|random|none][,output_resolution=N]"
)
BIGBIGAN_USAGE = (
    "bigbigan:PATH.pth[,output_resolution=N] (a narrower network: ch=N,resolution=N,attention=N|none,dim_z=N,"
    "shared_dim=N,n_classes=N)"
)


def _stylegan2(argument: str) -> torch.nn.Module:
    """An NVIDIA StyleGAN2 pickle, read by the restricted unpickler (no code from the file runs)."""
    from mlvgm.generators.safe_pickle import load_network_pickle
    from mlvgm.generators.stylegan2 import from_kwargs_and_state

    path, options = _checkpoint_and_options("stylegan2", argument, STYLEGAN2_USAGE, {
        "network": str, "space": str, "truncation_psi": float, "truncation_cutoff": int, "noise_mode": str,
        "output_resolution": int,
    })  # fmt: skip
    network = load_network_pickle(path, str(options.pop("network", "G_ema")))
    if network.class_name != "Generator":
        raise InputError(f"network of {path} is a {network.class_name}, not a Generator: choose network=G_ema (or G)")
    return from_kwargs_and_state(network.init_kwargs, network.state_dict, where=f"network pickle {path}", **options)


def _bigbigan(argument: str) -> torch.nn.Module:
    """BigBiGAN_x1.pth (pytorch-pretrained-gans), a plain state dict read with weights_only=True."""
    from mlvgm.generators.bigbigan import load_bigbigan

    def attention(value: str) -> int | None:
        return None if value.strip().lower() == "none" else int(value)

    attention.__name__ = "an int or none"
    path, options = _checkpoint_and_options("bigbigan", argument, BIGBIGAN_USAGE, {
        "output_resolution": int, "ch": int, "resolution": int, "attention": attention, "dim_z": int,
        "shared_dim": int, "n_classes": int,
    })  # fmt: skip
    return load_bigbigan(path, **options)


register_generator("stylegan2", _stylegan2, usage=STYLEGAN2_USAGE)
register_generator("bigbigan", _bigbigan, usage=BIGBIGAN_USAGE)

__all__ = [
    "MLVGM",
    "ShapesWorld",
    "available_generators",
    "generator_spec",
    "level_label",
    "load_generator",
    "register_generator",
    "resolve_levels",
]


def __getattr__(name: str):
    if name == "ShapesWorld":  # the shapes world's class, importable from here as before (PEP 562: on first use)
        from mlvgm.generators.shapes import ShapesWorld

        return ShapesWorld
    raise AttributeError(f"module 'mlvgm.generators' has no attribute {name!r}")
