"""The config of `python -m mlvgm.experiments` and the names it chooses from, without torch: the command checks
its arguments with these before it imports the jobs (mlvgm.paper_jobs), which import them from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from mlvgm import miniature_design as design
from mlvgm.config import check_ranges, device_option, option
from mlvgm.errors import InputError
from mlvgm.options import AUGMENTS
from mlvgm.plugins import method_names
from mlvgm.train_config import TABLE2_ROWS

NAMES = ("table1", "table2", "figure5", "all", "pilot", "miniature")
MINIATURE = ("pilot", "miniature")  # the pre-registered comparison (mlvgm.miniature_design), and its pilot
ROWS = tuple(TABLE2_ROWS)
METHODS = method_names()  # the built-in methods (mlvgm.plugins)
WORLD = "shapes:resolution=32"
# Each generator's spec; jobs on any but the shapes world are named "<generator>/..." and write "-<generator>"
# tables. The embedded VAE trains SimCLR's synth, random and ml-random rows, probed on the shapes world's ground
# truth like every other row.
GENERATORS = {"shapes": WORLD, "embedded": "embedded"}
EMBEDDED_ROWS = ("synth", "random", "ml-random")


@dataclass(frozen=True)
class ExperimentsConfig:
    name: str = option("all", f"experiment: {', '.join(NAMES)}", positional=True)
    seeds: int = option(
        0, "seeds per row (0: the experiment's own: 3 for table1/table2, 8 for the miniature; the pilot has one)"
    )
    budget: int = option(0, "training steps per run (0: 500): every row and arm the same compute")
    quantify_samples: int = option(64 * 4000, "walker budget per level (samples), as the shapes-quick preset's")
    real_images: int = option(
        8_000, "images in the finite 'real' dataset, exported from the shapes world (8,000: 4 epochs of 500 steps)"
    )
    methods: tuple[str, ...] = option(METHODS, "methods of Table 2 (SimSiam and BYOL train synth, random, ml-random)")
    rows: tuple[str, ...] = option(ROWS, "rows of Table 2")
    generators: tuple[str, ...] = option(
        tuple(GENERATORS), "generators: shapes (every row) and embedded (the hierarchical VAE: Table 1, and SimCLR's "
        f"{', '.join(EMBEDDED_ROWS)} rows)"
    )  # fmt: skip
    eval_train: int = option(
        0, "labelled images the probes are fitted on (0: 4,000 for table2, 10,000 for the pilot and the miniature)"
    )
    eval_test: int = option(
        0, "labelled images the probes are scored on (0: 1,000 for table2, 5,000 for the pilot and the miniature)"
    )
    method: str = option(
        "simclr",
        f"the pilot's and the miniature's method: {', '.join(METHODS)} (SimSiam and BYOL "
        "only at GPU scale: docs/experiments.md)",
    )
    arms: tuple[str, ...] = option(tuple(design.ARMS), "the miniature's arms (docs/experiments.md): S, M, P, N")
    augment: str = option("", "the miniature's T_x for every arm (empty: the one the committed pilot chose)")
    analyse_only: bool = option(False, "the miniature and its pilot: analyse the published jobs, run none")
    width: int = option(0, "the pilot's and the miniature's encoder width (0: 32, the quickstart's)")
    batch: int = option(0, "the pilot's and the miniature's pairs per step (0: 64, the quickstart's)")
    figure5_json: str = option(
        "", "tabulate this bench_sources JSON for Figure 5 instead of measuring (pytest bench/bench_sources.py, about "
        "30 min on 2 cores); the README names its commit and date"
    )  # fmt: skip
    out: str = option(
        "", "folder of the tables, plots and README.md (empty: results/paper, and its pilot/ and miniature/ for those)"
    )
    runs: str = option("runs/paper", "folder of the runs (resumable; delete it to start over)")
    device: str = device_option()

    def __post_init__(self) -> None:
        if self.name not in NAMES:
            raise InputError(f"unknown experiment {self.name!r}: choose one of {', '.join(NAMES)}")
        check_ranges(self, positive=("quantify_samples", "real_images"), flag="--")
        check_ranges(self, nonnegative=("seeds", "budget", "eval_train", "eval_test", "width", "batch"), flag="--",
                     note="0: the experiment's own")  # fmt: skip
        if self.name == "miniature" and self.seeds == 1:
            raise InputError("--seeds 1 leaves the paired tests without a spread: give at least 2 (0: 8)")
        if self.real_images < 64:
            raise InputError(f"--real_images must be at least one batch (64), got {self.real_images}")
        if self.method not in METHODS:
            raise InputError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.augment and self.augment not in AUGMENTS:
            raise InputError(f"--augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        for key, valid in (
            ("methods", METHODS),
            ("rows", ROWS),
            ("generators", tuple(GENERATORS)),
            ("arms", tuple(design.ARMS)),
        ):
            bad = [v for v in getattr(self, key) if v not in valid]
            if bad or not getattr(self, key):
                raise InputError(f"--{key} must be some of {','.join(valid)}, got {','.join(getattr(self, key))}")
        if self.figure5_json and not Path(self.figure5_json).is_file():
            raise InputError(f"--figure5_json {self.figure5_json} is not a file: give a pytest-benchmark JSON of "
                             "bench/bench_sources.py, or leave it out to measure one")  # fmt: skip


def resolved(config: ExperimentsConfig) -> ExperimentsConfig:
    """The config with every 0 or empty default replaced by the experiment's own value."""
    mini = config.name in MINIATURE
    own = {"seeds": 1 if config.name == "pilot" else design.SEEDS if mini else 3,
           "budget": design.pilot_budget() if config.name == "miniature" else design.STEPS,
           "eval_train": design.EVAL_TRAIN if mini else 4000, "eval_test": design.EVAL_TEST if mini else 1000,
           "width": design.BASE["width"], "batch": design.BASE["batch_size"],
           "out": f"results/paper/{config.name}" if mini else "results/paper"}  # fmt: skip
    return dataclasses.replace(config, **{key: value for key, value in own.items() if not getattr(config, key)})
