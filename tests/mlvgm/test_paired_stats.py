"""mlvgm.paired_stats against literal references: hand-computed t statistics with tabulated critical values, a
Holm example worked by hand, and the power of the paired t-test by simulation."""

import math

import numpy as np
import pytest

from mlvgm.paired_stats import holm, paired_power, paired_t, seeds_for_power, tost

D = [0.031, 0.012, 0.045, -0.004, 0.027, 0.019, 0.038, 0.008]  # 8 paired differences
T975_DF7 = 2.365  # two-sided 95%, 7 degrees of freedom (any t table)
T95_DF7 = 1.895  # one-sided 95%, 7 degrees of freedom


def literal(d):
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    return n, mean, sd / math.sqrt(n)


def test_paired_t_matches_the_formula_and_a_t_table():
    n, mean, se = literal(D)
    got = paired_t(D)
    assert got["n"] == n and got["mean"] == pytest.approx(mean)
    assert got["low"] == pytest.approx(mean - T975_DF7 * se, abs=2e-4)
    assert got["high"] == pytest.approx(mean + T975_DF7 * se, abs=2e-4)
    # the interval excludes 0 exactly when p < 0.05
    assert (got["p"] < 0.05) == (got["low"] > 0)
    shifted = [x - mean + T975_DF7 * se for x in D]  # the interval's lower end at 0: p = 0.05
    assert paired_t(shifted)["p"] == pytest.approx(0.05, abs=1e-3)


def test_paired_t_needs_two_pairs():
    with pytest.raises(ValueError, match="at least 2"):
        paired_t([0.1])


def test_tost_is_the_90_percent_interval_inside_the_margin():
    _, mean, se = literal(D)
    low, high = mean - T95_DF7 * se, mean + T95_DF7 * se
    for margin in (0.02, 0.04, 0.06, 0.1):
        got = tost(D, margin)
        assert got["low"] == pytest.approx(low, abs=2e-4) and got["high"] == pytest.approx(high, abs=2e-4)
        assert got["equivalent"] == (-margin < low and high < margin)
    # the larger one-sided p, from the literal statistic: at the margin that puts the upper end on it, p = 0.05
    edge = high
    assert tost(D, edge)["p"] == pytest.approx(0.05, abs=1e-3)
    with pytest.raises(ValueError, match="margin"):
        tost(D, 0.0)


def test_holm_against_a_worked_example():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> max so far 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_power_against_simulation():
    rng = np.random.default_rng(0)
    n, sd, delta, reps = 8, 0.025, 0.03, 20_000
    d = rng.normal(delta, sd, size=(reps, n))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    simulated = float((np.abs(t) > T975_DF7).mean())
    assert paired_power(delta, sd, n) == pytest.approx(simulated, abs=0.01)
    assert paired_power(0.0, sd, n) == pytest.approx(0.05, abs=1e-6)  # no effect: the test's size


def test_seeds_for_power_is_the_smallest_that_reaches_it():
    n = seeds_for_power(0.03, 0.025)
    assert n == 8  # the miniature's pre-registered seed count
    assert paired_power(0.03, 0.025, n) >= 0.8 > paired_power(0.03, 0.025, n - 1)
