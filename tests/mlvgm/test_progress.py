"""Progress where there is no terminal: a line every so often with the rate and the time left."""

from __future__ import annotations

import logging

import pytest

from mlvgm.progress import Progress, duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (45, "45 s"), (59.6, "1 min 00 s"), (200, "3 min 20 s"), (3900, "1 h 05 min"),
     (float("nan"), "?")],
)  # fmt: skip
def test_duration(seconds, text):
    assert duration(seconds) == text


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_instead_of_a_bar_off_a_terminal(caplog, monkeypatch):
    clock = Clock()
    monkeypatch.setattr("mlvgm.progress.time.monotonic", clock)
    with caplog.at_level(logging.INFO, logger="mlvgm"):
        bar = Progress(4, desc="train", unit="step", terminal=False, every=15)
        clock.now = 10
        bar.update(1, loss=3.14159)  # not yet a line
        clock.now = 20
        bar.update(1, loss=2.5)  # a line: 2 steps in 20 s
        clock.now = 30
        bar.close()  # the last line
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "train: 2/4 steps (50%), 0.1 steps/s, 20 s left | loss 2.5"
    assert lines[-1] == "train: 2/4 steps (50%), 0.0667 steps/s, 30 s left | loss 2.5" and len(lines) == 2


def test_a_disabled_progress_says_nothing_and_a_resumed_one_counts_its_own_rate(caplog, monkeypatch):
    clock = Clock()
    monkeypatch.setattr("mlvgm.progress.time.monotonic", clock)
    with caplog.at_level(logging.INFO, logger="mlvgm"):
        quiet = Progress(4, desc="x", unit="step", enabled=False, every=0)
        quiet.update(3)
        quiet.close()
        resumed = Progress(10, desc="train", unit="step", initial=6, terminal=False, every=0)
        clock.now = 10
        resumed.update(2)  # 2 steps of this session in 10 s, not 8
    assert [r.getMessage() for r in caplog.records] == ["train: 8/10 steps (80%), 0.2 steps/s, 10 s left"]
