"""Provenance: the git SHA, hardware, software and config behind every result we write (DINO-style).

Every command prints `provenance_line(...)` when it starts and stores `provenance(config)` beside its
outputs, so a figure in results/ can always be traced to the code and machine that made it.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

_REPO = Path(__file__).resolve().parent.parent


# Changed paths a record lists at most (the count is always whole).
CHANGED_LISTED = 20


def git_revision() -> dict[str, object]:
    """{'sha': ..., 'dirty': bool, 'changed': the tracked paths that differ from it} of the checkout mlvgm runs
    from; sha 'unknown' outside git. A run that publishes into the repository (python -m mlvgm.experiments)
    makes its own checkout dirty: `changed` tells those outputs from changed code."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"sha": "unknown", "dirty": None}
    paths = sorted(line[3:] for line in changed)
    return {"sha": sha, "dirty": bool(paths), "changed": paths[:CHANGED_LISTED], "changed_count": len(paths)}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, object]:
    info: dict[str, object] = {
        "cpu": cpu_name(),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpus": [],
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def software() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
    }


def _plain(config: object) -> object:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return config


def command_line() -> str:
    """How this process was started: 'python -m mlvgm.grid --out x.png', or the script's name."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = f"python -m {spec.name.removesuffix('.__main__')}" if spec and spec.name else Path(sys.argv[0]).name
    return " ".join([program, *sys.argv[1:]])


def provenance(config: object = None) -> dict[str, object]:
    """Everything needed to trace a result: time, command, git, hardware, software, config."""
    return {
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command_line(),
        "git": git_revision(),
        "hardware": hardware(),
        "software": software(),
        "config": _plain(config),
    }


def provenance_line(record: dict[str, object]) -> str:
    """One line for a log: 'git 1a2b3c4 (dirty) | AMD EPYC x2 | torch 2.x | cpu'."""
    git = record["git"]
    hw = record["hardware"]
    sha = str(git["sha"])[:10] + (" (dirty)" if git["dirty"] else "")
    gpus = ", ".join(hw["gpus"]) or "no GPU"
    return f"git {sha} | {hw['cpu']} x{hw['cpu_cores']} | {gpus} | torch {record['software']['torch']}"
