"""Plug-ins: self-supervised methods and view strategies T_z, registered by name, without torch.

A method or a view strategy is one file: its module (an `nn.Module` method, a T_z callable) and a record,
`Method` or `ViewStrategy`, registered at the end of the file. The built-ins are the files of mlvgm/methods/
and mlvgm/strategies/, found by name (a new file there is a new choice) and imported when first asked for, so
that a command checks `--method` and `--views` before torch loads. A user's own registers from their code:

    from mlvgm.plugins import Method, register_method
    register_method(Method("mine", build=lambda config: Mine(config), metrics=("agreement",)))
    train(TrainConfig(method="mine", ...), "runs/mine")

The trainer reads everything it needs about a method or strategy from its record: how to build it, the
config keys it reads, the metrics it logs, its loss at chance and the fused kernels (mlvgm.kernels) it runs.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from mlvgm.errors import InputError

METHOD_PACKAGE, STRATEGY_PACKAGE = "mlvgm.methods", "mlvgm.strategies"


@dataclass(frozen=True)
class Method:
    """A self-supervised method: an nn.Module whose forward(view_a, view_b) returns (loss, {metric: tensor}), with
    `after_step(step, total_steps)`, `backbone` and `param_groups(lr)` (mlvgm.methods.simclr is the example)."""

    name: str
    build: Callable  # TrainConfig -> the module, at its initial weights (seed first)
    keys: tuple[str, ...] = ()  # the TrainConfig keys it reads beyond the backbone's (arch, small_stem, width)
    metrics: tuple[str, ...] = ()  # the keys of forward's metrics, logged beside the loss
    chance_loss: Callable[[int], float] | None = None  # batch B -> the loss of an encoder that tells nothing apart
    kernels: tuple[str, ...] = ()  # fused ops it runs (mlvgm.kernels names), recorded with their implementation


@dataclass(frozen=True)
class ViewStrategy:
    """A view strategy T_z: anchors -> (anchors, positives, norms) as mlvgm.view_strategies.Views."""

    name: str
    build: Callable  # (TrainConfig, generator) -> the T_z callable
    keys: tuple[str, ...] = ()  # the TrainConfig keys it reads
    check: Callable | None = None  # TrainConfig -> None, or InputError (a missing file) before any work
    kernels: tuple[str, ...] = ()  # fused ops it runs on a Continuous-Sampling batch


_METHODS: dict[str, Method] = {}
_STRATEGIES: dict[str, ViewStrategy] = {}


def register_method(method: Method) -> Method:
    """Make `--method NAME` build this method; a name already taken is replaced."""
    _check_name(method.name, "method")
    _METHODS[method.name] = method
    return method


def register_views(strategy: ViewStrategy) -> ViewStrategy:
    """Make `--views NAME` build this view strategy; a name already taken is replaced."""
    _check_name(strategy.name, "view strategy")
    _STRATEGIES[strategy.name] = strategy
    return strategy


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise InputError(f"a {what} name must be letters, digits, '-' or '_', got {name!r}")


@functools.cache
def _built_in(package: str) -> tuple[str, ...]:
    """The modules of a plug-in package, without importing them (or torch); read once per process (every
    TrainConfig checks its names against them)."""
    spec = importlib.util.find_spec(package)
    locations = spec.submodule_search_locations if spec else None
    return tuple(sorted(m.name for m in pkgutil.iter_modules(locations or []) if not m.name.startswith("_")))


def method_names() -> tuple[str, ...]:
    """Built-in methods first, in the order SimCLR, SimSiam, BYOL are documented, then registered ones."""
    found = _built_in(METHOD_PACKAGE)
    built = [name for name in ("simclr", "simsiam", "byol") if name in found]
    rest = sorted({*found, *_METHODS} - set(built))
    return (*built, *rest)


def strategy_names() -> tuple[str, ...]:
    found = _built_in(STRATEGY_PACKAGE)
    built = [name for name in ("none", "random", "learned") if name in found]
    rest = sorted({*found, *_STRATEGIES} - set(built))
    return (*built, *rest)


def method(name: str) -> Method:
    """The record of `--method name` (a built-in is imported on first use)."""
    return _lookup(name, _METHODS, METHOD_PACKAGE, method_names(), "method")


def view_strategy(name: str) -> ViewStrategy:
    """The record of `--views name` (a built-in is imported on first use)."""
    return _lookup(name, _STRATEGIES, STRATEGY_PACKAGE, strategy_names(), "views")


def _lookup(name: str, registry: dict, package: str, names: tuple[str, ...], key: str):
    if name not in registry and name in _built_in(package):
        importlib.import_module(f"{package}.{name}")  # registers itself
    if name not in registry:
        raise InputError(f"{key} must be one of {', '.join(names)}, got {name!r}")
    return registry[name]
