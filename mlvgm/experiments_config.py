"""The config of `python -m mlvgm.experiments` and the names it chooses from, without torch: the command checks
its arguments with these before it imports the jobs (mlvgm.paper_jobs), which import them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlvgm.config import option
from mlvgm.errors import InputError

NAMES = ("table1", "table2", "figure5", "all")
ROWS = ("real", "synth", "random", "learned", "ml-random", "ml-learned")
METHODS = ("simclr", "simsiam", "byol")
WORLD = "shapes:resolution=32"
# Each generator's spec; jobs on any but the shapes world are named "<generator>/..." and write "-<generator>"
# tables. The embedded VAE trains SimCLR's synth, random and ml-random rows, probed on the shapes world's ground
# truth like every other row.
GENERATORS = {"shapes": WORLD, "embedded": "embedded"}
EMBEDDED_ROWS = ("synth", "random", "ml-random")


@dataclass(frozen=True)
class ExperimentsConfig:
    name: str = option("all", f"experiment: {', '.join(NAMES)}", positional=True)
    seeds: int = option(3, "seeds per row (and per Table 1 quantification)")
    budget: int = option(500, "training steps per Table 2 run (64 pairs each): every row the same compute")
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
    eval_train: int = option(4000, "labelled images the probes are fitted on")
    eval_test: int = option(1000, "labelled images the probes are scored on")
    figure5_json: str = option(
        "", "tabulate this bench_sources JSON for Figure 5 instead of measuring (pytest bench/bench_sources.py, about "
        "30 min on 2 cores); the README names its commit and date"
    )  # fmt: skip
    out: str = option("results/paper", "folder of the tables, plots and README.md")
    runs: str = option("runs/paper", "folder of the runs (resumable; delete it to start over)")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")

    def __post_init__(self) -> None:
        if self.name not in NAMES:
            raise InputError(f"unknown experiment {self.name!r}: choose one of {', '.join(NAMES)}")
        for key in ("seeds", "budget", "quantify_samples", "real_images", "eval_train", "eval_test"):
            if getattr(self, key) <= 0:
                raise InputError(f"--{key} must be > 0, got {getattr(self, key)}")
        if self.real_images < 64:
            raise InputError(f"--real_images must be at least one batch (64), got {self.real_images}")
        for key, valid in (("methods", METHODS), ("rows", ROWS), ("generators", tuple(GENERATORS))):
            bad = [v for v in getattr(self, key) if v not in valid]
            if bad or not getattr(self, key):
                raise InputError(f"--{key} must be some of {','.join(valid)}, got {','.join(getattr(self, key))}")
        if self.figure5_json and not Path(self.figure5_json).is_file():
            raise InputError(f"--figure5_json {self.figure5_json} is not a file: give a pytest-benchmark JSON of "
                             "bench/bench_sources.py, or leave it out to measure one")  # fmt: skip
