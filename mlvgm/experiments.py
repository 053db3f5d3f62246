"""`python -m mlvgm.experiments NAME`: the paper's Tables 1 and 2 and Figure 5 in miniature, and a pre-registered
comparison.

    python -m mlvgm.experiments table1     # quantification with 3 seeds: mu +- std per level, verdicts' agreement
    python -m mlvgm.experiments table2     # real / synth / random / learned / ml-random / ml-learned rows
    python -m mlvgm.experiments figure5    # the data-loader benchmark (bench/figure5.py, from a checkout)
    python -m mlvgm.experiments all        # all three; --seeds, --budget (steps per run), --out override
    python -m mlvgm.experiments pilot      # the miniature's pilot: {S, M} x {crop+flip, no T_x}, one seed
    python -m mlvgm.experiments miniature  # the pre-registered comparison of arms S, M, P, N (docs/experiments.md)

An experiment is data: a list of jobs (export a dataset, quantify, train) derived from the presets, each
named by a hash of its config and of the jobs it reads. Runs live in RUNS/<job>-<hash>/: a finished job is
never redone, an interrupted training resumes from its last checkpoint, and with nothing left to do a
command only re-aggregates the tables into OUT (CSV, markdown, a plot each, README.md).
Every Table 2 row trains for the same steps x batch and is probed on the same held-out ground truth.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mlvgm.cli import run
from mlvgm.config import parse_config
from mlvgm.experiments_config import MINIATURE, ExperimentsConfig, resolved
from mlvgm.io import check_creatable
from mlvgm.lazy import lazy_exports

# The jobs' names, served from mlvgm.paper_jobs on first use (PEP 562): `mlvgm.experiments.plan(config)` lists an
# experiment's jobs, and a bad argument is still answered before torch loads.
_JOBS = ("Job", "plan", "run_experiments")
__all__ = ["ExperimentsConfig", "main", *_JOBS]


def main(argv: Sequence[str] | None = None) -> dict:
    config, _, _ = parse_config(ExperimentsConfig, None, argv, prog="python -m mlvgm.experiments",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    config = resolved(config)
    check_creatable(Path(config.runs), flag="--runs")
    check_creatable(Path(config.out), flag="--out")
    if config.name in MINIATURE:  # the model stack loads only once the arguments have passed
        from mlvgm.miniature import run_miniature

        return run_miniature(config)
    from mlvgm.paper_jobs import run_experiments

    return run_experiments(config)


__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_JOBS, "mlvgm.paper_jobs"))


if __name__ == "__main__":
    sys.exit(run(main, "python -m mlvgm.experiments"))
