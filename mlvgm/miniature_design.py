"""The pre-registered design of the paper in miniature (`python -m mlvgm.experiments pilot | miniature`), as data:
its arms, what is held equal, the endpoints, the tests and their thresholds. docs/experiments.md states the same
design in words and says when it was fixed; changing a value here after the sweep has run is a change of the
rule, to be reported beside the pre-registered outcome. No torch: the command checks its arguments with it.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlvgm.errors import InputError

# What every arm shares: the quickstart's encoder and optimiser on the shapes world at 32 px.
BASE = {"generator": "shapes:resolution=32", "method": "simclr", "width": 32, "batch_size": 64, "optimizer": "adam",
        "base_lr": 0.004, "temperature": 0.2, "truncation": 2.0, "view_t": 2.0}  # fmt: skip
STEPS = 500  # per run: 32,000 pairs, about 3.5 min at 155 pairs/s (bf16) on 2 cores
SEEDS = 8  # power: 0.83 for a paired difference of 0.03 at a paired SD of 0.025 (see docs/experiments.md)
EVAL_TRAIN, EVAL_TEST = 10_000, 5_000  # held-out probe images per seed, the same for every arm of a seed
PILOT_SEED = 100  # the pilot's seed is not one of the sweep's, so no pilot run is reused as data

# The views whose levels and sigmas arm M takes: the views issue's calibration of the full-budget shapes
# quantification (budget-stable verdicts, equal-change rule), one file for every seed.
M_VIEWS = Path("results/quantify/shapes/audit/views.json")
PILOT_DECISION = Path("results/paper/pilot/decision.json")
ROOT = Path(__file__).resolve().parents[1]  # a source checkout, whose results/ hold both

# T_z of each arm (T_x is the pilot's choice, the same for every arm).
ARMS = {
    "S": {"views": "random", "view_levels": ("1", "2", "3", "4", "5", "6"), "view_sigma": (0.2,)},
    "M": {"views": "random"},  # levels and sigmas from M_VIEWS
    "P": {"views": "random", "view_levels": ("2", "3", "4", "5"), "view_sigma": (1.0,)},
    "N": {"views": "none"},
}
ARM_NAMES = {"S": "single-latent N^t(0, 0.2, 2) on every level", "M": "multi-level by the paper's rule",
             "P": "the paper's choice transposed: sigma 1.0 on z2-z5", "N": "no T_z (T_x only)"}  # fmt: skip

# The pilot: {S, M} x these T_x, one seed. It chooses the T_x of the sweep and says go or no-go.
PILOT_ARMS = ("S", "M")
PILOT_TX = ("no_color", "none")  # random resized crop + flip, or no pixel augmentation
GO_GAIN = 0.05  # M must gain at least this on shape (linear top-1) over its untrained network to go
TX_TIE = 0.02  # T_x gains within this of each other: crop + flip, so that arm N's pairs differ at all

# The analysis. Endpoints are top-1 accuracies on the shape factor; differences are paired by seed.
ALPHA = 0.05
PRIMARY = ("M", "S", "linear")  # M - S, shape, linear probe: two-sided paired t-test
EQUIVALENCE_MARGIN = 0.03  # TOST when the primary is not significant: equivalent if the 90% CI is within +-0.03
SECONDARY = (("M", "S", "knn"), ("P", "S", "linear"), ("S", "N", "linear"), ("M", "N", "linear"))  # Holm over 4
LEARNS_GAIN = 0.03  # an arm learned if its mean paired gain over init is >= this and its 95% CI excludes 0
DIAGNOSTIC_FACTORS = ("position", "color", "background")  # invariance diagnostics, reported, not tested
CEILING = 0.926  # shape: a supervised CNN on real shapes images (results/embedded, python -m mlvgm.zoo.evidence)


def pilot_decision(root: Path = ROOT) -> dict[str, object] | None:
    """What the committed pilot decided (results/paper/pilot/decision.json), None before it has run."""
    path = root / PILOT_DECISION
    return json.loads(path.read_text()) if path.is_file() else None


def pilot_budget() -> int:
    """The sweep's steps per run: the committed pilot's, else STEPS."""
    decision = pilot_decision()
    return int(decision["budget"]) if decision else STEPS


def m_views(root: Path = ROOT) -> dict[str, object]:
    """Arm M's T_z: view_levels and view_sigma of the committed calibration (a source checkout's results/)."""
    path = root / M_VIEWS
    if not path.is_file():
        raise InputError(f"{M_VIEWS} is missing: arm M takes its views from it; run from a clone of the repository")
    views = json.loads(path.read_text())
    return {"views": "random", "view_levels": tuple(views["view_levels"]),
            "view_sigma": tuple(float(s) for s in views["view_sigma"]), "view_t": float(views["view_t"])}  # fmt: skip
