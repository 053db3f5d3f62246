"""Positive views in latent space, T_z: the `none` and `random` strategies, and Figure-4 view grids.

    anchors z = (z_1, ..., z_n)  ->  positives z' = (z_1 + w_1, ..., z_n + w_n)

- `none`: z' = z. The two views of a pair differ only by what T_x does in pixel space (the paper's
  "synth" baseline).
- `random` (Jahanian et al. 2021, applied per level as in the paper's section 3.2): on each chosen
  level i, w_i ~ N^t(mu_i, sigma_i, t_i) per coordinate, truncated at t_i standard deviations; the
  other levels are left alone (w_i = 0). Optionally each level of a sample is perturbed with
  probability p and its sigma drawn from a range (the multi-level option); the batch runs through the
  fused kernel mlvgm.kernels.perturb.
- `learned` (Li et al. 2022): the walkers mlvgm.quantify trained, T_i(z_i) = z_i + p(z_i; phi_i).

Every strategy returns `Views(anchors, positives, norms)`, with norms[b, i] = ||z'_i - z_i||_2, the
per-level perturbation magnitude that the paper's Table 1 summarises. The strategies live in
mlvgm.view_strategies and the Figure-4 sweep in mlvgm.view_grids; their names import from here too, loaded on
first use, so the command checks its arguments before torch loads.

`python -m mlvgm.views --generator shapes --out grid.png` draws the paper's Figure 4 for a generator:
rows are anchors, and each column adds the *same* noise vector w to one level (or group) at a time,
with the amplified pixel difference to the anchor underneath.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlvgm.cli import run
from mlvgm.config import option, parse_config
from mlvgm.errors import InputError, check_positive_int
from mlvgm.io import check_output_file

if TYPE_CHECKING:
    from mlvgm.view_grids import ViewGrid

_EXPORTS = {
    "Views": "mlvgm.view_strategies",
    "LevelNoise": "mlvgm.view_strategies",
    "NoViews": "mlvgm.view_strategies",
    "RandomViews": "mlvgm.view_strategies",
    "LearnedViews": "mlvgm.view_strategies",
    "LevelSelection": "mlvgm.view_strategies",
    "ViewGrid": "mlvgm.view_grids",
    "level_sweep": "mlvgm.view_grids",
}

__all__ = sorted([*_EXPORTS, "ViewsConfig", "main"])


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mlvgm.views' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


@dataclass(frozen=True, kw_only=True)
class ViewsConfig:
    out: str = option(help="PNG to write (its folder is created); a .json with provenance goes beside it")
    generator: str = option("shapes", "generator spec (python -m mlvgm.views --generator nope lists them)")
    levels: tuple[str, ...] = option((), "levels (1-based) or group/level names, one per column; empty: every level")
    anchors: int = option(4, "number of anchor rows")
    sigma: float = option(1.0, "std of the shared noise vector w")
    t: float = option(2.0, "truncation of w, in units of sigma")
    truncation: float = option(2.0, "truncation of the anchors")
    seed: int = option(0, "seed of anchors and noise")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")

    def __post_init__(self) -> None:
        check_positive_int("--anchors", self.anchors)
        for key in ("sigma", "t", "truncation"):
            if not getattr(self, key) > 0:
                raise InputError(f"--{key} must be > 0, got {getattr(self, key)}")
        if self.seed < 0:
            raise InputError(f"--seed must be >= 0, got {self.seed}")


def main(argv: Sequence[str] | None = None) -> ViewGrid:
    args, _, _ = parse_config(
        ViewsConfig, None, argv, prog="python -m mlvgm.views",
        description="Draw the paper's Figure 4 for a generator: rows are anchors, each column adds the "
        "same noise vector to one latent level (or group), with |view - anchor| underneath.",
    )  # fmt: skip
    out = check_output_file(args.out, suffixes=(".png",))
    from mlvgm.view_grids import draw_view_grid  # torch loads only once the arguments pass

    return draw_view_grid(args, out)


if __name__ == "__main__":
    sys.exit(run(main, "python -m mlvgm.views"))
