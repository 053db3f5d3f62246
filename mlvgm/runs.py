"""Run folders: what `python -m mlvgm.train` writes, and what resuming and evaluating read back.

RUN/config.json        the full config and provenance (written when the run starts)
RUN/checkpoint.json    the current checkpoint's record (mlvgm.checkpoint), after the first checkpoint
RUN/metrics.csv, loss.png, probes.csv, probes.md, summary.json

A run folder is a boundary: what it holds decides nothing outside it. Its files are read only when they
are not links out of it (mlvgm.io.inside), and a results destination stored in its config.json is
dropped when the config is read back: a folder someone sends you must not choose where we write.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

from mlvgm.config import coerce
from mlvgm.errors import InputError
from mlvgm.io import field, inside, read_json
from mlvgm.train_config import TrainConfig

CONFIG = "config.json"
RECORD = "checkpoint.json"  # the current checkpoint's record (written by mlvgm.checkpoint)


def default_run_dir(preset: str) -> Path:
    """runs/<preset>-<YYYYmmdd-HHMMSS> in the working folder."""
    return Path("runs") / f"{preset or 'run'}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def has_checkpoint(run_dir: Path) -> bool:
    path = Path(run_dir) / RECORD
    return path.exists() or path.is_symlink()  # a dangling link is still something to refuse, not to ignore


def upgraded(values: dict) -> dict:
    """A run config written by an earlier version, in this version's keys, running the path it ran: the
    Continuous-Sampling step compiled where `compile_generator` was true, eager where it was false; the CUDA
    graph that `cuda_graphs auto` put on that compiled step is now part of `cs_compile on` on CUDA."""
    values = dict(values)
    if "compile_generator" in values and "cs_compile" not in values:
        values["cs_compile"] = "on" if values.pop("compile_generator") is True else "off"
    if values.get("cuda_graphs") == "auto":
        values["cuda_graphs"] = "off"
    return values


def load_run_config(run_dir: str | Path, **changes) -> tuple[TrainConfig, str]:
    """(the config a run was made with, with `changes` applied; its preset) from RUN/config.json. Its `results`
    is dropped (give it in `changes` to keep one): copying a run's summary elsewhere is the caller's choice."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not (path.exists() or path.is_symlink()):
        raise InputError(f"{run_dir} is not a run folder (no {CONFIG}): give a folder python -m mlvgm.train wrote")
    damaged = "the run is damaged, start a new run"
    inside(run_dir, CONFIG, what=CONFIG, fix=damaged)
    saved = read_json(path, what="run config", fix=damaged)
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise InputError(f"{path} is not a run's config (damaged?): start a new run")
    values = upgraded(saved["config"])
    preset = field(saved, "preset", str, where=str(path), fix=damaged, default="")
    unknown = [key for key in values if key not in {f.name for f in dataclasses.fields(TrainConfig)}]
    if unknown:
        raise InputError(f"{path} has the config key {unknown[0]!r}, which this version of mlvgm does not know: use "
                         "the version that made the run, or start a new run")  # fmt: skip
    values = coerce(TrainConfig, {**values, "results": "", **changes}, source=str(path), fix=damaged)
    try:
        return TrainConfig(**values), preset
    except InputError as exc:  # a value out of range: say which file holds it
        raise InputError(f"{path}: {exc}: {damaged}") from None
    except TypeError as exc:  # a required key missing (none is today; kept one line should one become so)
        raise InputError(f"{path} is not a run's config ({exc}): {damaged}") from None


def check_new_run_dir(run_dir: Path) -> None:
    """A new run may use `run_dir` when it does not exist or is empty; else one line saying what to do."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise InputError(f"{run_dir} is a file, not a folder: choose another --out")
    if not any(run_dir.iterdir()):
        return
    if has_checkpoint(run_dir):
        raise InputError(f"{run_dir} already holds a run: --resume {run_dir} to continue it, or choose another --out")
    if (run_dir / CONFIG).exists():
        raise InputError(f"{run_dir} holds a run that stopped before its first checkpoint: --resume {run_dir} to "
                         "start it again with its config, or choose another --out")  # fmt: skip
    raise InputError(f"{run_dir} is not empty and holds no run: choose another --out")
