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
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mlvgm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
