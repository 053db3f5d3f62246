"""One optimisation step and what drives it, shared by `python -m mlvgm.train` (mlvgm.training), `python -m
mlvgm.zoo.train` (mlvgm.zoo.training) and the benchmarks (bench/bench_sources.py), so that the step a benchmark
times is the step a run takes:

    amp = use_bf16(config.amp, device)                       # the bf16 rule
    step = TrainStep(channels_last(model, device), optimizer, amp=amp)
    loss, metrics = step(view_a, view_b, lr=warmup_cosine(s, peak=.., warmup=.., total=..))

A step: the learning rate set on every parameter group (a group marked `fixed_lr` keeps the one it was built
with: SimSiam's predictor), the inputs in the model's memory format (channels-last on CUDA), the gradients
cleared, the forward under bf16 autocast where `amp`, the backward, the optimiser's step. `forward_backward`
stops before the optimiser, for a caller that inspects or clips the gradients first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX-512 BF16 or AMX); elsewhere torch emulates it."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(amp: str, device: torch.device | str) -> bool:
    """`--amp auto|on|off`: auto is bf16 autocast on CUDA and on CPUs with native bf16 (elsewhere it is emulated,
    and a training step runs about twice as slowly as in fp32)."""
    if amp == "auto":
        device = torch.device(device)
        return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
    return amp == "on"


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """`lr` on every parameter group but those marked fixed_lr, which keep the rate they were built with."""
    for group in optimizer.param_groups:
        if not group.get("fixed_lr"):
            group["lr"] = lr


class TrainStep:
    """forward, backward and the optimiser's step of a model whose forward returns (loss, metrics).

    forward:   the callable the step runs (the model, or a compiled version of it)
    optimizer: over the model's parameters; a call given `lr` sets it first (set_learning_rate)
    amp:       bf16 autocast around the forward
    graphed:   the forward is replayed from CUDA graphs (each call starts a new graph-tree iteration)
    """

    def __init__(self, forward: Callable, optimizer: torch.optim.Optimizer, *, amp: bool, graphed: bool = False):
        self.forward, self.optimizer, self.amp, self.graphed = forward, optimizer, amp, graphed

    def forward_backward(self, *inputs: Tensor, lr: float | None = None) -> tuple[Tensor, dict]:
        """(loss, metrics) with the gradients in the parameters (none left from an earlier call), no update."""
        if lr is not None:
            set_learning_rate(self.optimizer, lr)
        inputs = tuple(_memory_format(x) for x in inputs)
        self.optimizer.zero_grad(set_to_none=True)
        if self.graphed:  # a new iteration: CUDA graph trees may reuse the previous step's output memory
            torch.compiler.cudagraph_mark_step_begin()
        # Gradients on explicitly: a data source that yields inside torch.no_grad() (a generator suspended at its
        # yield) leaves grad mode off in the caller.
        with torch.enable_grad(), torch.autocast(_device_type(inputs), dtype=torch.bfloat16, enabled=self.amp):
            loss, metrics = self.forward(*inputs)
        loss.backward()
        return loss, metrics

    def __call__(self, *inputs: Tensor, lr: float | None = None) -> tuple[Tensor, dict]:
        loss, metrics = self.forward_backward(*inputs, lr=lr)
        self.optimizer.step()
        return loss, metrics


def _memory_format(x):
    """Images channels-last on CUDA (as the model there); contiguous elsewhere, whatever the loader made (FFCV
    yields channels-last views, and oneDNN runs the network faster on them: one format for every source)."""
    if not isinstance(x, Tensor) or x.dim() != 4:
        return x
    return x.contiguous(memory_format=torch.channels_last if x.device.type == "cuda" else torch.contiguous_format)


def _device_type(inputs: tuple) -> str:
    return next((x.device.type for x in inputs if isinstance(x, Tensor)), "cpu")


def channels_last(model: nn.Module, device: torch.device) -> nn.Module:
    """The model in channels-last memory on CUDA (tensor cores read it without a transpose); as is elsewhere."""
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model
