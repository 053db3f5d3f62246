"""Checkpoints as safetensors + JSON, written atomically, loadable without executing anything.

    RUN/checkpoint-<step>.safetensors   model tensors ("model/<name>") and optimizer state
                                        ("optim/<param index>/<key>")
    RUN/checkpoint.json                 the commit record: which file is current, the step, the
                                        optimizer's param groups and anything else JSON can hold

The tensors are written first, then checkpoint.json is replaced atomically to point at them, then
the previous tensors file is removed. A crash at any moment leaves checkpoint.json naming a complete
file, so `--resume` always finds a consistent state.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mlvgm.errors import InputError
from mlvgm.io import atomic_path, atomic_write_json

RECORD = "checkpoint.json"


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
    with atomic_path(run_dir / name) as tmp:
        save_file(tensors, str(tmp), metadata={"step": str(step)})
    previous = read_record(run_dir) if (run_dir / RECORD).exists() else None
    atomic_write_json(run_dir / RECORD, {"file": name, "step": step, "param_groups": groups, **extra})
    if previous and previous["file"] != name:
        (run_dir / previous["file"]).unlink(missing_ok=True)
    return run_dir / name


def read_record(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RECORD
    if not path.exists():
        raise InputError(f"{run_dir} has no {RECORD}, so no checkpoint yet: python -m mlvgm.train --resume {run_dir} "
                         "trains it")  # fmt: skip
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc.msg}): the run folder is damaged, start a new run") from None
    if not isinstance(record, dict) or not isinstance(record.get("file"), str) or type(record.get("step")) is not int:
        raise InputError(f"{path} names no checkpoint file and step: the run folder is damaged, start a new run")
    return record


def load_checkpoint(
    run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict:
    """Restore model (and optimizer) from run_dir's current checkpoint; returns its record."""
    record = read_record(run_dir)
    path = Path(run_dir) / record["file"]
    if not path.exists():
        raise InputError(f"{path} is missing: the run folder is damaged, start a new run")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 -- safetensors raises its own error types for damaged files
        raise InputError(
            f"{path} is not a readable safetensors file ({exc}): the checkpoint is damaged, start a new run"
        ) from None
    state = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            f"{path} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}): "
            "resume with the config the run was made with"
        )
    if optimizer is not None:
        per_param: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, index, name = key.split("/", 2)
                per_param.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": per_param, "param_groups": record["param_groups"]})
    return record
