"""Run folders: what `python -m mlvgm.train` writes, and what resuming and evaluating read back.

RUN/config.json        the full config and provenance (written when the run starts)
RUN/checkpoint.json    the current checkpoint's record (mlvgm.checkpoint), after the first checkpoint
RUN/metrics.csv, loss.png, probes.csv, probes.md, summary.json
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

from mlvgm.checkpoint import RECORD
from mlvgm.config import coerce
from mlvgm.errors import InputError
from mlvgm.recipe import TrainConfig

CONFIG = "config.json"


def default_run_dir(preset: str) -> Path:
    """runs/<preset>-<YYYYmmdd-HHMMSS> in the working folder."""
    return Path("runs") / f"{preset or 'run'}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / RECORD).exists()


def load_run_config(run_dir: str | Path, **changes) -> tuple[TrainConfig, str]:
    """(the config a run was made with, with `changes` applied; its preset) from RUN/config.json."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise InputError(f"{run_dir} is not a run folder (no {CONFIG}): give a folder python -m mlvgm.train wrote")
    try:
        saved = json.loads(path.read_text())
        values = saved["config"]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path} is not a run's config (damaged?): start a new run") from None
    if not isinstance(values, dict):
        raise InputError(f"{path} is not a run's config (damaged?): start a new run")
    unknown = [key for key in values if key not in {f.name for f in dataclasses.fields(TrainConfig)}]
    if unknown:
        raise InputError(f"{path} has the config key {unknown[0]!r}, which this version of mlvgm does not know: use "
                         "the version that made the run, or start a new run")  # fmt: skip
    values = coerce(TrainConfig, {**values, **changes}, source=str(path), fix="the run is damaged, start a new run")
    return TrainConfig(**values), saved.get("preset", "")


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
