"""The A/B gate's decision for one timed figure: paired rounds of base and head, a t interval, a verdict.

Each round measures base and head in fresh processes, one after the other; a round's log ratio d is positive when
head is worse (slower, fewer images/s, more CO2). Over k rounds, with mean m and standard error s/sqrt(k), and a
one-sided level alpha / figures for each of the `figures` gated figures (Bonferroni: the chance that any unchanged
figure fails stays at most alpha):

- regression:  the lower bound m - t*se is above 0 and head is worse by at least half the threshold;
- improvement: the upper bound is below 0 and head is better by at least half the threshold;
- no change:   the whole interval lies within +-threshold (two one-sided tests at the same level);
- undecided:   none of these: the rounds are too few or too noisy to tell.

Only a regression fails the gate. The threshold is the change the gate is sized to catch (10%); half of it is
the smallest change it calls, so that a significant but tiny shift in a long run is not a failure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

VERDICTS = ("regression", "improvement", "no change", "undecided")


@dataclass(frozen=True)
class Decision:
    verdict: str
    change: float  # head / base - 1 in the figure's bad direction: +0.1 is 10% worse
    low: float  # the interval of `change`, each side at level alpha / figures
    high: float
    rounds: int


def log_worse(base: float, head: float, *, higher_is_better: bool) -> float:
    """log(head / base) oriented so that positive is worse."""
    return math.log(base / head) if higher_is_better else math.log(head / base)


def decide(worse: Sequence[float], *, threshold: float = 0.10, alpha: float = 0.05, figures: int = 1) -> Decision:
    """The verdict on per-round log ratios `worse` (positive = head worse), as the module docstring says."""
    k = len(worse)
    if k < 2:
        raise ValueError("a paired interval needs at least 2 rounds")
    mean = sum(worse) / k
    sd = math.sqrt(sum((d - mean) ** 2 for d in worse) / (k - 1))
    t = float(stats.t.ppf(1.0 - alpha / figures, k - 1))
    low, high = mean - t * sd / math.sqrt(k), mean + t * sd / math.sqrt(k)
    called, bound = math.log1p(threshold / 2), math.log1p(threshold)
    if low > 0 and mean >= called:
        verdict = "regression"
    elif high < 0 and mean <= -called:
        verdict = "improvement"
    elif -bound < low and high < bound:
        verdict = "no change"
    else:
        verdict = "undecided"
    return Decision(verdict, math.expm1(mean), math.expm1(low), math.expm1(high), k)
