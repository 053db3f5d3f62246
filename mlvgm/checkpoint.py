"""Checkpoints as safetensors + JSON, written atomically, loadable without executing anything.

    RUN/checkpoint-<step>.safetensors   model tensors ("model/<name>") and optimizer state
                                        ("optim/<param index>/<key>")
    RUN/checkpoint.json                 the commit record: which file is current, the step, the
                                        optimizer's param groups and anything else JSON can hold

The tensors are written first, then checkpoint.json is replaced atomically to point at them, then
the previous tensors file is removed. A crash at any moment leaves checkpoint.json naming a complete
file, so `--resume` always finds a consistent state.

A run folder travels between people like a checkpoint, so everything read back is checked before use:
the record's `file` is a bare `checkpoint-<8 digits>.safetensors` inside the folder (never an absolute,
../ or linked-out name, so neither loading nor the removal of a previous file reaches outside), the
record's fields have their types and ranges, the param groups match the optimizer's, and the tensors
have the model's shapes and finite values. Each failure is one InputError line.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mlvgm.errors import InputError
from mlvgm.io import atomic_path, atomic_write_json, check_regular_file, field, inside, read_json
from mlvgm.runs import RECORD

FILE_PATTERN = r"checkpoint-\d{8}\.safetensors"  # the only names save_checkpoint writes
DAMAGED = "the run folder is damaged, start a new run"

_log = logging.getLogger(__name__)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"optimizer state {key!r} is not a tensor; checkpointing supports tensor state only")
            tensors[f"optim/{index}/{key}"] = value.detach().contiguous().cpu()
    return tensors, state["param_groups"]


def save_checkpoint(
    run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, step: int, extra: dict
) -> Path:
    """Write the model and optimizer at `step` to run_dir atomically; returns the tensors file."""
    run_dir = Path(run_dir)
    tensors = {f"model/{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    optim_tensors, groups = _optimizer_tensors(optimizer)
    tensors.update(optim_tensors)
    name = f"checkpoint-{step:08d}.safetensors"
    with atomic_path(run_dir / name) as tmp:  # os.replace: a link of that name is replaced, never written through
        save_file(tensors, str(tmp), metadata={"step": str(step)})
    previous = _previous_file(run_dir)
    atomic_write_json(run_dir / RECORD, {"file": name, "step": step, "param_groups": groups, **extra})
    if previous is not None and previous.name != name:
        previous.unlink(missing_ok=True)  # a name inside run_dir; a link there is removed, not its target
    return run_dir / name


def _previous_file(run_dir: Path) -> Path | None:
    """The tensors file the current record names, when it is one of ours inside run_dir; else None (a damaged
    or hostile record's file is left alone: a checkpoint never deletes anything it did not write)."""
    if not (run_dir / RECORD).is_file():
        return None
    try:
        return inside(run_dir, read_record(run_dir)["file"], what=RECORD, fix=DAMAGED, pattern=FILE_PATTERN)
    except InputError as exc:
        _log.warning(f"not removing the previous checkpoint: {exc}")
        return None


def read_record(run_dir: str | Path) -> dict:
    """RUN/checkpoint.json, checked: `file` a checkpoint name inside RUN, `step` and the optional `total_steps`,
    `elapsed_s` and `epoch` of the right types and ranges, `param_groups` a list of objects."""
    run_dir = Path(run_dir)
    path = run_dir / RECORD
    if not (path.exists() or path.is_symlink()):
        raise InputError(f"{run_dir} has no {RECORD}, so no checkpoint yet: python -m mlvgm.train --resume {run_dir} "
                         "trains it")  # fmt: skip
    inside(run_dir, RECORD, what=RECORD, fix=DAMAGED)  # not a link to a file elsewhere
    record = read_json(path, what="checkpoint record", fix=DAMAGED)
    if not isinstance(record, dict) or not isinstance(record.get("file"), str) or type(record.get("step")) is not int:
        raise InputError(f"{path} names no checkpoint file and step: {DAMAGED}")
    where = str(path)
    field(record, "step", int, where=where, fix=DAMAGED, low=0)
    total = field(record, "total_steps", int, where=where, fix=DAMAGED, low=1, default=None)
    if total is not None and record["step"] > total:
        raise InputError(f"{where}: step {record['step']} is past total_steps {total}: {DAMAGED}")
    field(record, "elapsed_s", float, where=where, fix=DAMAGED, low=0, default=None)
    field(record, "epoch", float, where=where, fix=DAMAGED, low=0, default=None)
    groups = field(record, "param_groups", list, where=where, fix=DAMAGED, default=[])
    for i, group in enumerate(groups):
        if not isinstance(group, dict):
            raise InputError(f"{where}: param_groups[{i}] must be an object, got {type(group).__name__}: {DAMAGED}")
    inside(run_dir, record["file"], what=str(path), fix=DAMAGED, pattern=FILE_PATTERN)
    return record


def load_checkpoint(
    run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict:
    """Restore model (and optimizer) from run_dir's current checkpoint; returns its record."""
    record = read_record(run_dir)
    path = Path(run_dir) / record["file"]
    if not (path.exists() or path.is_symlink()):
        raise InputError(f"{path} is missing: {DAMAGED}")
    check_regular_file(path, what="checkpoint", fix="the checkpoint is damaged, start a new run")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 -- safetensors raises its own error types for damaged files
        raise InputError(
            f"{path} is not a readable safetensors file ({exc}): the checkpoint is damaged, start a new run"
        ) from None
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise InputError(f"{path}: tensor {key} holds NaN or infinite values: the run diverged before this "
                             "checkpoint, start a new run (a lower --base_lr)")  # fmt: skip
    state = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    missing, unexpected = _mismatch(model.state_dict(), state)
    if missing or unexpected:
        raise InputError(
            f"{path} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}): "
            "resume with the config the run was made with"
        )
    own = model.state_dict()
    for name, value in state.items():
        if value.shape != own[name].shape:
            raise InputError(f"{path}: tensor model/{name} has shape {list(value.shape)}, this model's has "
                             f"{list(own[name].shape)}: load it with the config the run was made with "
                             "(its config.json), or start a new run")  # fmt: skip
    model.load_state_dict(state, strict=True)
    if optimizer is not None:
        _load_optimizer(path, record, tensors, optimizer)
    return record


def _mismatch(own: dict, state: dict) -> tuple[list[str], list[str]]:
    return [k for k in own if k not in state], [k for k in state if k not in own]


def _load_optimizer(path: Path, record: dict, tensors: dict, optimizer: torch.optim.Optimizer) -> None:
    """The optimizer state of a checkpoint, checked against `optimizer` first: its param groups (count,
    parameters, the kind of each setting) and each state tensor (a parameter it has, that parameter's shape),
    so a damaged file is one line here rather than a traceback in load_state_dict or the next step."""
    current = optimizer.state_dict()
    groups = record.get("param_groups", [])
    where = f"{path.parent / RECORD}"
    if len(groups) != len(current["param_groups"]):
        raise InputError(f"{where} has {len(groups)} param groups, this optimizer {len(current['param_groups'])}: "
                         "resume with the config the run was made with")  # fmt: skip
    for i, (saved, own) in enumerate(zip(groups, current["param_groups"], strict=True)):
        if saved.get("params") != own["params"]:
            raise InputError(f"{where}: param_groups[{i}] holds other parameters than this optimizer's: resume with "
                             "the config the run was made with")  # fmt: skip
        for key, value in own.items():
            if key != "params" and key in saved and not _same_kind(saved[key], value):
                raise InputError(f"{where}: param_groups[{i}].{key} must be like {value!r}, got {saved[key]!r}: "
                                 f"{DAMAGED}")  # fmt: skip
    params = [p for group in optimizer.param_groups for p in group["params"]]
    ids = [index for group in current["param_groups"] for index in group["params"]]
    shapes = {index: p.shape for index, p in zip(ids, params, strict=True)}
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith("optim/"):
            continue
        _, index, name = [*key.split("/", 2), "", ""][:3]
        if not re.fullmatch(r"\d{1,9}", index) or int(index) not in shapes or not name:
            raise InputError(f"{path}: {key} is not the state of a parameter of this optimizer: {DAMAGED}")
        if value.dim() > 0 and value.shape != shapes[int(index)]:
            raise InputError(f"{path}: tensor {key} has shape {list(value.shape)}, its parameter "
                             f"{list(shapes[int(index)])}: resume with the config the run was made with")  # fmt: skip
        per_param.setdefault(int(index), {})[name] = value
    if len({frozenset(state) for state in per_param.values()}) > 1:
        raise InputError(f"{path}: the parameters' optimizer states hold different keys: {DAMAGED}")
    try:
        optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:  # anything the checks above did not foresee
        raise InputError(f"{path}: the optimizer state does not load ({exc}): resume with the config the run was "
                         "made with, or start a new run") from None  # fmt: skip


def _same_kind(saved: object, own: object) -> bool:
    """Whether a param-group setting read from JSON is of the kind the optimizer's own is (a flag, a finite
    number, a string, a list of such: JSON turns Adam's betas tuple into a list)."""
    if own is None or isinstance(own, bool):
        return saved is None or isinstance(saved, bool)
    if isinstance(own, int | float):
        return isinstance(saved, int | float) and not isinstance(saved, bool) and math.isfinite(saved)
    if isinstance(own, list | tuple):
        return isinstance(saved, list) and len(saved) == len(own) and all(map(_same_kind, saved, own))
    if isinstance(own, str):
        return isinstance(saved, str)
    return True
