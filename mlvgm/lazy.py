"""Names a module re-exports from others, imported on first use (PEP 562): `import mlvgm` and the commands'
fronts stay cheap (no torch) until a name that needs it is asked for.

    _EXPORTS = {"train": "mlvgm.training", "TrainingDiverged": "mlvgm.training"}
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(module: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level `__getattr__` and `__dir__` that load `exports` ({name: module it lives in}) on first use."""

    def __getattr__(name: str) -> object:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[module]), *exports})

    return __getattr__, __dir__
