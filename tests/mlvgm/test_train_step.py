"""mlvgm.train_step: the one training step (against a step written out by hand), its schedule and its bf16 rule."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mlvgm.schedule import warmup_cosine
from mlvgm.train_step import TrainStep, set_learning_rate, use_bf16


class Pair(nn.Module):
    """A model with the methods' interface: (view_a, view_b) -> (loss, metrics)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
        self.head = nn.Linear(5, 5)
        self.autocast_seen: list[bool] = []

    def forward(self, a, b):
        self.autocast_seen.append(torch.is_autocast_enabled(a.device.type))
        za, zb = self.head(self.body(a)), self.head(self.body(b))
        return ((za - zb) ** 2).mean() + za.pow(2).mean(), {"norm": za.norm()}


def views(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(4, 3, 8, 8, generator=g), torch.rand(4, 3, 8, 8, generator=g)


def groups(model: Pair, lr: float) -> list[dict]:
    return [{"params": list(model.body.parameters()), "lr": lr, "fixed_lr": False},
            {"params": list(model.head.parameters()), "lr": lr, "fixed_lr": True}]  # fmt: skip


def test_a_step_is_the_hand_written_step_and_keeps_fixed_groups_at_their_rate():
    ours, theirs = Pair(), Pair()
    step = TrainStep(ours, torch.optim.SGD(groups(ours, 0.5), momentum=0.9), amp=False)
    optimizer = torch.optim.SGD(groups(theirs, 0.5), momentum=0.9)
    for s in range(3):
        lr = 0.1 * (s + 1)
        loss, metrics = step(*views(s), lr=lr)
        # by hand: the rate on the scheduled group only, clear, forward, backward, update
        optimizer.param_groups[0]["lr"] = lr
        optimizer.zero_grad()
        want, _ = theirs(*views(s))
        want.backward()
        optimizer.step()
        assert loss.item() == pytest.approx(want.item(), rel=1e-6) and "norm" in metrics
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert [g["lr"] for g in step.optimizer.param_groups] == [pytest.approx(0.3), 0.5]


def test_forward_backward_leaves_gradients_and_no_update_and_runs_under_no_grad():
    model = Pair()
    before = copy.deepcopy(model.state_dict())
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=1.0), amp=False)
    with torch.no_grad():  # what a data source suspended inside no_grad leaves the caller in
        step.forward_backward(*views(0))
    assert all(p.grad is not None for p in model.parameters())
    params = {k for k, _ in model.named_parameters()}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if k in params)


def test_amp_turns_autocast_on_around_the_forward_only():
    model = Pair()
    TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), amp=True)(*views(0))
    TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), amp=False)(*views(0))
    assert model.autocast_seen == [True, False]


def test_the_bf16_rule():
    assert use_bf16("on", "cpu") and not use_bf16("off", "cuda")
    assert use_bf16("auto", "cuda")
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    assert use_bf16("auto", "cpu") == ("avx512_bf16" in flags or "amx_bf16" in flags)


def literal_schedule(step, peak, warmup, total, floor):
    """The schedule as written in the docs, step by step."""
    if warmup > total - 1:
        warmup = total - 1
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / (total - warmup)
    return peak * floor + peak * (1 - floor) * (1 + math.cos(math.pi * t)) / 2


@pytest.mark.parametrize(("warmup", "total", "floor"), [(0, 50, 0.0), (10, 100, 0.0), (100, 1000, 0.1), (5, 3, 0.0)])
def test_warmup_cosine_is_the_literal_schedule(warmup, total, floor):
    for step in range(total):
        want = literal_schedule(step, 2.0, warmup, total, floor)
        assert warmup_cosine(step, peak=2.0, warmup=warmup, total=total, floor=floor) == pytest.approx(want)


def test_set_learning_rate_skips_fixed_groups():
    model = Pair()
    optimizer = torch.optim.SGD(groups(model, 0.7), lr=0.7)
    set_learning_rate(optimizer, 0.01)
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.7]
