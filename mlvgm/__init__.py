"""mlvgm: multiple-latent-variable generative models as a data source for contrastive learning.

The main pieces, importable from here (loaded on first use, so `python -m mlvgm.<command>` starts fast):

    load_generator("shapes")          a generator from a spec string (mlvgm.generators)
    MLVGM                             the generator protocol's base class
    Stream(seed, rank, purpose)       counter-based random streams (mlvgm.streams)
    truncated_normal(...)             N^t(mu, sigma, t) on the device (mlvgm.latents)
    RandomViews, NoViews, LevelNoise  latent-space view strategies T_z (mlvgm.views)
    check_mlvgm(g)                    protocol conformance check (mlvgm.testing)
    quantify(g, gamma=1.0)            Table 1: each latent's influence, a pandas.DataFrame (mlvgm.quantify)
    LevelWalkers                      learned perturbations T_i(z_i) = z_i + p(z_i) (mlvgm.walkers)
    load_backbone(run)                a training run's backbone, in eval mode (mlvgm.backbone)
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

from mlvgm.lazy import lazy_exports

__version__ = "0.1.0"


class _KernelsFromSourceTree(importlib.abc.MetaPathFinder):
    """`mlvgm.kernels` in a source checkout. The fused kernels live in the repository's top-level kernels/
    folder (the project's layout) and a wheel installs them as mlvgm/kernels (pyproject's package-dir),
    never as a top-level `kernels` package, a name PyPI's `kernels` already installs. Run from a checkout
    (PYTHONPATH=., pytest), the same import name reads the folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def find_spec(self, name, path=None, target=None):
        if name != "mlvgm.kernels":
            return None
        return importlib.util.spec_from_file_location(
            name, self.folder / "__init__.py", submodule_search_locations=[str(self.folder)]
        )


_source_kernels = Path(__file__).resolve().parent.parent / "kernels"
if (
    not (Path(__file__).resolve().parent / "kernels").is_dir()
    and (_source_kernels / "__init__.py").is_file()
    and not any(type(finder).__name__ == "_KernelsFromSourceTree" for finder in sys.meta_path)
):
    sys.meta_path.append(_KernelsFromSourceTree(_source_kernels))

_EXPORTS = {
    "load_generator": "mlvgm.generators",
    "register_generator": "mlvgm.generators",
    "available_generators": "mlvgm.generators",
    "resolve_levels": "mlvgm.generators",
    "MLVGM": "mlvgm.generators",
    "ShapesWorld": "mlvgm.generators",
    "Stream": "mlvgm.streams",
    "truncated_normal": "mlvgm.latents",
    "normal": "mlvgm.latents",
    "uniform": "mlvgm.latents",
    "RandomViews": "mlvgm.views",
    "NoViews": "mlvgm.views",
    "LevelNoise": "mlvgm.views",
    "Views": "mlvgm.views",
    "check_mlvgm": "mlvgm.testing",
    "quantify": "mlvgm.quantify",
    "LevelWalkers": "mlvgm.walkers",
    "InputError": "mlvgm.errors",
    "load_backbone": "mlvgm.backbone",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
