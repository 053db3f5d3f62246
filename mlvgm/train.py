"""`python -m mlvgm.train`: self-supervised training on Continuous Sampling (or a real image folder).

    python -m mlvgm.train                                  # the quickstart: shapes world, minutes on a CPU
    python -m mlvgm.train --preset shapes-synth --epochs 5 # any preset, any field overridden
    python -m mlvgm.train --resume runs/quickstart-...     # continue exactly where a run stopped
    torchrun --nproc_per_node 4 -m mlvgm.train --preset .. --out RUN   # data parallel

Each step: latents from the (seed, rank, step) stream -> T_z -> g -> T_x -> encoder -> loss (SimCLR's
InfoNCE with negatives gathered across ranks, SimSiam's or BYOL's), then the optimiser with the
recipe's learning rate (mlvgm.recipe builds every object from the config). A run folder holds
config.json (with provenance), metrics.csv, the checkpoint (safetensors + JSON, atomic), loss.png and,
after evaluation (mlvgm.evaluate), probes.csv / probes.md and summary.json.

A run whose loss becomes NaN or infinite stops at the next log step or checkpoint with one line
(TrainingDiverged, exit status 2): no checkpoint of the broken weights, no evaluation, no summary; the last
good checkpoint stays. A resume takes no results destination from the run folder: only --results typed again.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from mlvgm.cli import launched_rank, launched_world, run
from mlvgm.config import parse_config
from mlvgm.errors import InputError
from mlvgm.io import atomic_path, atomic_write_text, check_creatable, make_output_dir
from mlvgm.lazy import lazy_exports
from mlvgm.progress import duration
from mlvgm.runs import check_new_run_dir, default_run_dir, load_run_config
from mlvgm.train_config import DEFAULT_PRESET, PRESETS, TrainConfig, check_inputs

# The training loop's public names, importable from here as before: mlvgm.training holds them and loads torch,
# so it is imported on first use (PEP 562), never by the command's argument checks.
_EXPORTS = ("train", "TrainingDiverged")
__all__ = ["main", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_EXPORTS, "mlvgm.training"))


def main(argv: Sequence[str] | None = None) -> dict:
    def extra(parser):
        parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")

    argv = list(sys.argv[1:] if argv is None else argv)
    config, given, args = parse_config(
        TrainConfig, PRESETS, argv, prog="python -m mlvgm.train", default_preset=DEFAULT_PRESET, extra=extra,
        description="Self-supervised training of an encoder on views a generator makes on the fly "
        "(Continuous Sampling) or on an image folder, then linear-probe and kNN evaluation.",
    )  # fmt: skip
    if getattr(args, "resume", None):
        run_dir = Path(args.resume)
        typed = any(a == "--preset" or a.startswith("--preset=") for a in argv)
        config, preset = _resumed_config(run_dir, given, args.preset if typed else None)
        return _finish(_train(config, run_dir, resume=True, preset=preset), config)
    return _new_run(config, args.preset)


def _train(config: TrainConfig, run_dir: Path, **how) -> dict:
    """mlvgm.training.train, imported only here: once the arguments have passed their checks."""
    from mlvgm.training import train

    return train(config, run_dir, **how)


def _resumed_config(run_dir: Path, given: dict, preset_given: str | None) -> tuple[TrainConfig, str]:
    """The config of the run in run_dir; keys given on the command line must agree with it. Its summary is
    copied only where --results is typed again: a results folder stored in the run is ignored (the run
    folder may come from someone else, and must not choose where we write)."""
    results = given.get("results", "")
    if results and launched_rank() == 0:
        check_creatable(results, flag="--results")
    config, preset = load_run_config(run_dir, results=results)
    if preset_given is not None and preset_given != preset:
        raise InputError(f"{run_dir} was made with preset {preset!r}, not {preset_given!r}: drop --preset to resume")
    for key, value in given.items():
        if key != "results" and getattr(config, key) != value:
            raise InputError(
                f"{run_dir} was made with {key}={getattr(config, key)!r}, not {value!r}: "
                "resume with the same config or start a new run"
            )
    return config, preset


def _new_run(config: TrainConfig, preset: str) -> dict:
    if launched_world() > 1 and not config.out:
        raise InputError("with torchrun, pass --out RUN_DIR so that every rank writes to the same run folder")
    run_dir = Path(config.out) if config.out else default_run_dir(preset)
    check_inputs(config)  # a missing checkpoint or image folder fails before any work
    if launched_rank() == 0:
        check_new_run_dir(run_dir)
        check_creatable(run_dir, flag="--out")
        if config.results:
            check_creatable(config.results, flag="--results")
    return _finish(_train(config, run_dir, preset=preset), config)


def _finish(summary: dict, config: TrainConfig) -> dict:
    """Print the outcome and copy the run's summary files into config.results (rank 0 only)."""
    import pandas as pd  # loaded by the training already: imported here to keep the argument checks light

    from mlvgm.distributed import shutdown
    from mlvgm.probes import probes_markdown

    shutdown()
    if launched_rank() != 0:
        return summary
    run_dir = Path(summary["run"])
    session = f"{summary['steps_this_session']} steps in {duration(summary['wall_s'])}"
    if summary["steps_this_session"] != summary["steps"]:
        session += f" this session ({summary['steps']} of {summary['total_steps']} in all)"
    print(f"trained {session} ({summary['pairs_per_s']:.0f} pairs/s); "
          f"{duration(summary['elapsed_s'])} in all, evaluation included")  # fmt: skip
    if summary["steps"] < summary["total_steps"]:
        print(f"stopped at step {summary['steps']} of {summary['total_steps']}: --resume {run_dir} continues it")
    elif summary["total_steps"] < summary["planned_steps"]:
        print(f"the time budget ({config.budget_minutes:g} min) cut the run to {summary['total_steps']} of "
              f"{summary['planned_steps']} planned steps (--budget_minutes 0 trains them all)")  # fmt: skip
    if "probes" in summary:
        text = probes_markdown(pd.DataFrame(summary["probes"]))
        print(text)
        atomic_write_text(run_dir / "probes.md", text + "\n")
    print(f"run folder: {run_dir}")
    if config.results:
        out = make_output_dir(config.results, flag="--results")
        for name in ("metrics.csv", "loss.png", "probes.csv", "probes.md", "summary.json"):
            # our own files only: a link left in the run folder is not followed out of it
            path = run_dir / name
            if path.is_file() and not path.is_symlink() and path.resolve() != (out / name).resolve():
                with atomic_path(out / name) as tmp:
                    shutil.copyfile(path, tmp)
        print(f"summary copied to {out}/")
    return summary


if __name__ == "__main__":
    sys.exit(run(main, "python -m mlvgm.train"))
