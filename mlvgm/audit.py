"""`python -m mlvgm.audit`: the paper's second phase, measured. For each level a quantification kept (or the
levels you name), over a grid of sigmas, what perturbing it does to the image: mean pixel change, a fixed
network's feature change, the share of pixels the positives lose to saturation, and each ground-truth
factor's flip rate where the generator declares factors; a calibration sheet per level (rows of anchors,
columns of sigmas); and the sigmas a label-free rule picks (mlvgm.view_rule), as a views.json to train on.

    python -m mlvgm.audit --quantify results/quantify/shapes --out results/quantify/shapes/audit
    python -m mlvgm.audit --generator embedded --levels 1,2,3,4,5 --out results/quantify/embedded-audit
    python -m mlvgm.train --config results/quantify/shapes/audit/views.json

The measurements are mlvgm.view_audit's, the rule mlvgm.view_rule's; docs/quantify.md explains both.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlvgm.cli import run
from mlvgm.config import check_ranges, device_option, option, parse_config
from mlvgm.errors import InputError, check_positive_int
from mlvgm.io import check_creatable
from mlvgm.options import AUDIT_SIGMAS


@dataclass(frozen=True, kw_only=True)
class AuditConfig:
    out: str = option(help="folder for audit.csv/.md/.png, one sheet-<level>.png per level, views.json, audit.json")
    quantify: str = option("", "a python -m mlvgm.quantify --out folder: audit the levels it keeps")
    levels: tuple[str, ...] = option((), "or these levels (1-based or names, one unit each), instead of --quantify")
    generator: str = option("", "generator spec (default: the quantification's, else shapes:resolution=32)")
    sigmas: tuple[float, ...] = option(AUDIT_SIGMAS, "the sigma grid, ascending")
    t: float = option(2.0, "truncation of the noise, in sigmas (the views' view_t)")
    pairs: int = option(2048, "anchor/positive pairs per (level, sigma)")
    rows: int = option(6, "anchors per calibration sheet")
    truncation: float = option(2.0, "truncation of the anchors")
    features: bool = option(True, "measure the feature change (a fixed untrained ResNet-18; off: pixels only)")
    seed: int = option(0, "seed of anchors and noise")
    device: str = device_option()

    def __post_init__(self) -> None:
        if bool(self.quantify) == bool(self.levels):
            raise InputError("give --quantify DIR (the levels its verdicts keep) or --levels (by hand), one of the two")
        check_positive_int("--pairs", self.pairs)
        check_positive_int("--rows", self.rows)
        if self.rows > self.pairs:
            raise InputError(f"--rows {self.rows} exceeds --pairs {self.pairs}: a sheet shows some of the pairs")
        if not self.sigmas:
            raise InputError("--sigmas is empty: give an ascending list of positive sigmas, e.g. 0.25,0.5,1,2")
        if not all(math.isfinite(s) and s > 0 for s in self.sigmas):
            bad = next(s for s in self.sigmas if not (math.isfinite(s) and s > 0))
            raise InputError(f"--sigmas must all be finite and > 0, got {bad:g}: e.g. 0.25,0.5,1,2")
        if list(self.sigmas) != sorted(set(self.sigmas)):
            raise InputError("--sigmas must ascend without repeats: the rule reads them in order")
        check_ranges(self, positive=("t", "truncation"), nonnegative=("seed",), flag="--")


def main(argv: Sequence[str] | None = None):
    config, _, _ = parse_config(
        AuditConfig, None, argv, prog="python -m mlvgm.audit",
        description="The paper's second phase, measured: for each kept level and a grid of sigmas, the image "
        "change, the saturated share beyond the anchors', factor flips, a calibration sheet, and the sigmas a "
        "label-free rule picks (views.json).",
    )  # fmt: skip
    check_creatable(config.out)  # created once the inputs are read: bad input leaves no folder
    if config.quantify:
        folder = Path(config.quantify)
        if not folder.is_dir():
            raise InputError(f"--quantify {folder}: no such folder: give the --out folder of python -m mlvgm.quantify")
        for name in ("table1.csv", "dynamics.csv", "quantify.json"):
            if not (folder / name).is_file():
                raise InputError(f"--quantify {folder}: no {name} there: give the --out folder of python -m "
                                 "mlvgm.quantify")  # fmt: skip
    from mlvgm.view_calibration import audit_command  # torch loads only once the arguments pass

    return audit_command(config)


if __name__ == "__main__":
    sys.exit(run(main, "python -m mlvgm.audit"))
