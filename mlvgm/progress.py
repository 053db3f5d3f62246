"""Progress of long work (training, quantification, evaluation, export) wherever its output goes.

On a terminal a tqdm bar; anywhere else (a log file, CI, `| tee`) tqdm would print nothing useful, so
`Progress` logs one line every `every` seconds and one at the end, with the rate and the time left:

    train: 120/240 steps (50%), 1.4 steps/s, 1 min 26 s left | loss 3.41, lr 0.0031
"""

from __future__ import annotations

import logging
import math
import sys
import time

from tqdm import tqdm

_log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 05 min'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """A tqdm bar on a terminal, log lines elsewhere.

    total:    units of work in all
    desc:     what is being done ("train", "walkers", "export")
    unit:     what one unit is ("step", "img")
    initial:  units already done (a resumed run)
    enabled:  False shows nothing (other ranks, library calls that ask for silence)
    terminal: force the bar (True) or the lines (False); None: a bar when stderr is a terminal
    every:    seconds between lines when not on a terminal
    """

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str,
        initial: int = 0,
        enabled: bool = True,
        terminal: bool | None = None,
        every: float = 30.0,
    ) -> None:
        self.total, self.desc, self.unit, self.done, self.every = total, desc, unit, initial, every
        self.enabled = enabled
        self.bar = None
        self.postfix: dict[str, object] = {}
        self.start = self.last = time.monotonic()
        self.first = initial
        if enabled and (terminal if terminal is not None else sys.stderr.isatty()):
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False)

    def update(self, n: int = 1, **postfix: object) -> None:
        self.done += n
        if postfix:
            self.postfix = postfix
        if not self.enabled:
            return
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix({k: _short(v) for k, v in postfix.items()}, refresh=False)
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            _log.info(self.line())

    def set_total(self, total: int) -> None:
        """The work changed size (a time budget cut a run short)."""
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def rate(self) -> float:
        """Units per second since this Progress started (a resumed run counts only its own)."""
        elapsed = time.monotonic() - self.start
        return (self.done - self.first) / elapsed if elapsed > 0 else float("nan")

    def line(self) -> str:
        rate = self.rate()
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        share = 100 * self.done / max(self.total, 1)
        text = (f"{self.desc}: {self.done:,}/{self.total:,} {self.unit}s ({share:.0f}%), "
                f"{rate:.3g} {self.unit}s/s, {duration(left)} left")  # fmt: skip
        if self.postfix:
            text += " | " + ", ".join(f"{k} {_short(v)}" for k, v in self.postfix.items())
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.done > self.first and time.monotonic() - self.start >= self.every:
            _log.info(self.line())
        self.enabled = False


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
