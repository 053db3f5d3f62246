"""Paired comparisons over seeds, as the miniature's pre-registration states them: a two-sided paired t-test
with its 95% interval, the two one-sided tests of equivalence (TOST) with its 90% interval, Holm's step-down
correction, and the power of a paired t-test. scipy.stats does the distributions; no torch, no files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats


def paired_t(differences: Sequence[float], *, alpha: float = 0.05) -> dict[str, float]:
    """mean, sd, n, the (1 - alpha) interval and the two-sided p-value of H0: mean difference 0."""
    d = [float(x) for x in differences]
    n = len(d)
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 pairs, got {n}")
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * se
    p = float(stats.ttest_1samp(d, 0.0).pvalue) if sd > 0 else (1.0 if mean == 0 else 0.0)
    return {"mean": mean, "sd": sd, "n": n, "low": mean - half, "high": mean + half, "p": p}


def tost(differences: Sequence[float], margin: float, *, alpha: float = 0.05) -> dict[str, float]:
    """Equivalence within +-margin: p is the larger of the two one-sided p-values (H0: mean <= -margin, H0: mean
    >= +margin); equivalent when p < alpha, i.e. when the (1 - 2 alpha) interval lies inside (-margin, margin)."""
    if margin <= 0:
        raise ValueError(f"the equivalence margin must be > 0, got {margin}")
    d = [float(x) for x in differences]
    lower = stats.ttest_1samp([x + margin for x in d], 0.0, alternative="greater").pvalue
    upper = stats.ttest_1samp([x - margin for x in d], 0.0, alternative="less").pvalue
    interval = paired_t(d, alpha=2 * alpha)
    p = float(max(lower, upper))
    return {"margin": margin, "p": p, "low": interval["low"], "high": interval["high"], "equivalent": p < alpha}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (reject where adjusted < alpha)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def paired_power(delta: float, sd: float, n: int, *, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level alpha to detect a true mean difference `delta` with n pairs
    whose differences have standard deviation `sd` (the noncentral t)."""
    df = n - 1
    shift = delta / (sd / math.sqrt(n))
    t = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(t, df, shift) + stats.nct.cdf(-t, df, shift))


def seeds_for_power(delta: float, sd: float, *, power: float = 0.8, alpha: float = 0.05, most: int = 100) -> int:
    """The fewest pairs whose paired t-test reaches `power` for `delta` at `sd`."""
    for n in range(2, most + 1):
        if paired_power(delta, sd, n, alpha=alpha) >= power:
            return n
    raise ValueError(f"more than {most} pairs are needed for power {power} at delta {delta}, sd {sd}")
