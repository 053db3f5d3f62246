"""Choosing an implementation for a kernel op: impl="auto" | "torch" | "compiled" | "triton".

- "torch":    the reference, plain eager torch ops (autograd through every op).
- "compiled": the torch path for CPUs (and GPUs without Triton): restructured to stay in cache and
              torch.compile'd where inductor fuses the pointwise work.
- "triton":   the fused Triton kernels. They need CUDA tensors, or TRITON_INTERPRET=1 set before
              triton was imported (the interpreter runs them on CPU tensors, slowly: for tests).
- "auto":     "triton" for CUDA tensors, "compiled" otherwise.

Nothing falls back silently: an explicit impl runs or raises, and every "auto" choice is logged once
per op and device and kept in `chosen()`; training records what its ops resolve to in its provenance
(mlvgm.recipe.kernels_used).
"""

from __future__ import annotations

import logging
import os

import torch

from mlvgm.errors import InputError
from mlvgm.options import KERNEL_IMPLS

IMPLS = KERNEL_IMPLS
NO_TRITON = "impl='triton' needs the triton package: pip install triton (CUDA builds of torch bring it)"

_log = logging.getLogger("mlvgm.kernels")
_chosen: dict[str, str] = {}  # "op@device_type" -> impl that "auto" picked


def interpreter_mode() -> bool:
    """True when Triton kernels run in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_usable(device: torch.device) -> bool:
    """Whether Triton kernels can run on tensors of `device` in this process."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and interpreter_mode()


def resolve_impl(op: str, impl: str, device: torch.device | str) -> str:
    """The implementation of `op` to run on `device` ("torch", "compiled" or "triton")."""
    device = torch.device(device)
    if impl not in IMPLS:
        raise InputError(f"unknown impl {impl!r} for {op}: choose one of {', '.join(IMPLS)}")
    if impl == "triton" and not triton_usable(device):
        raise InputError(
            f"impl='triton' for {op} needs CUDA tensors (these are on {device.type}); on a CPU use "
            "impl='compiled' or 'torch', or set TRITON_INTERPRET=1 before importing triton to run the "
            "kernels in Triton's interpreter"
        )
    if impl != "auto":
        return impl
    picked = "triton" if device.type == "cuda" else "compiled"
    key = f"{op}@{device.type}"
    if _chosen.get(key) != picked and not torch.compiler.is_compiling():  # a graph being traced cannot log
        _chosen[key] = picked
        _log.info(f"[mlvgm.kernels] {op} on {device.type}: impl='auto' runs {picked!r}")
    return picked


def chosen() -> dict[str, str]:
    """What impl="auto" picked so far, per op and device type: {"infonce@cpu": "compiled", ...}."""
    return dict(_chosen)
