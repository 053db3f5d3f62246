"""`python -m mlvgm.grid`: the paper's Figure 4 for a generator.

    python -m mlvgm.grid --generator shapes --out grid.png
    python -m mlvgm.grid --generator embedded --levels 1,3 --sigma 0.5 --out grid.png

Rows are anchors, and each column adds the *same* noise vector w to one level (or group) at a time, with the
amplified pixel difference to the anchor underneath (mlvgm.view_grids draws it). The arguments are checked
before torch loads.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlvgm.cli import run
from mlvgm.config import check_ranges, device_option, option, parse_config
from mlvgm.errors import check_positive_int
from mlvgm.io import check_output_file

if TYPE_CHECKING:
    from mlvgm.view_grids import ViewGrid


@dataclass(frozen=True, kw_only=True)
class GridConfig:
    out: str = option(help="PNG to write (its folder is created); a .json with provenance goes beside it")
    generator: str = option("shapes", "generator spec (python -m mlvgm.grid --generator nope lists them)")
    levels: tuple[str, ...] = option((), "levels (1-based) or group/level names, one per column; empty: every level")
    anchors: int = option(4, "number of anchor rows")
    sigma: float = option(1.0, "std of the shared noise vector w")
    t: float = option(2.0, "truncation of w, in units of sigma")
    truncation: float = option(2.0, "truncation of the anchors")
    seed: int = option(0, "seed of anchors and noise")
    device: str = device_option()

    def __post_init__(self) -> None:
        check_positive_int("--anchors", self.anchors)
        check_ranges(self, positive=("sigma", "t", "truncation"), nonnegative=("seed",), flag="--")


def main(argv: Sequence[str] | None = None) -> ViewGrid:
    args, _, _ = parse_config(
        GridConfig, None, argv, prog="python -m mlvgm.grid",
        description="Draw the paper's Figure 4 for a generator: rows are anchors, each column adds the "
        "same noise vector to one latent level (or group), with |view - anchor| underneath.",
    )  # fmt: skip
    out = check_output_file(args.out, suffixes=(".png",))
    from mlvgm.view_grids import draw_view_grid  # torch loads only once the arguments pass

    return draw_view_grid(args, out)


if __name__ == "__main__":
    sys.exit(run(main, "python -m mlvgm.grid"))
