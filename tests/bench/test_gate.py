"""bench.gate's verdicts, against hand computations with Student's t from a printed table."""

from __future__ import annotations

import math

import pytest

from bench.gate import decide, log_worse

# Student's t quantiles from a printed table (two-sided 0.05 / 3 = one-sided 0.98333 is not tabulated; these are
# the one-sided 0.95 and 0.975 rows): df 5 -> 2.015, 2.571; df 9 -> 1.833, 2.262
T_95 = {5: 2.015, 9: 1.833}
T_975 = {5: 2.571, 9: 2.262}


def _literal(worse, t):
    k = len(worse)
    mean = sum(worse) / k
    sd = (sum((d - mean) ** 2 for d in worse) / (k - 1)) ** 0.5
    return mean - t * sd / k**0.5, mean + t * sd / k**0.5


def test_the_interval_is_the_textbook_t_interval():
    worse = [0.10, 0.12, 0.08, 0.11, 0.09, 0.13]
    d = decide(worse, alpha=0.05, figures=1)
    low, high = _literal(worse, T_95[5])
    assert math.log1p(d.low) == pytest.approx(low, abs=1e-3) and math.log1p(d.high) == pytest.approx(high, abs=1e-3)
    d2 = decide(worse, alpha=0.05, figures=2)  # Bonferroni: each side at 0.025
    low, high = _literal(worse, T_975[5])
    assert math.log1p(d2.low) == pytest.approx(low, abs=1e-3)
    assert d.change == pytest.approx(math.expm1(0.105))


@pytest.mark.parametrize(
    ("worse", "verdict"),
    [
        ([0.10, 0.12, 0.08, 0.11, 0.09, 0.13], "regression"),  # ~11% worse, tight
        ([-0.10, -0.12, -0.08, -0.11, -0.09, -0.13], "improvement"),
        ([0.01, -0.01, 0.02, -0.02, 0.0, 0.01], "no change"),  # within +-10%, tight
        ([0.02, 0.03, 0.02, 0.03, 0.025, 0.02], "no change"),  # significant but below half the threshold
        ([0.3, -0.3, 0.2, -0.25, 0.1, -0.05], "undecided"),  # too noisy to tell either way
    ],
)
def test_verdicts(worse, verdict):
    assert decide(worse, threshold=0.10, alpha=0.05, figures=3).verdict == verdict


def test_direction_of_each_figure():
    assert log_worse(100.0, 90.0, higher_is_better=True) > 0  # fewer images/s is worse
    assert log_worse(1.0, 1.1, higher_is_better=False) == pytest.approx(math.log(1.1))  # a longer epoch is worse
    with pytest.raises(ValueError, match="at least 2 rounds"):
        decide([0.1])
