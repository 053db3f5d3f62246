"""What a quantification run supports saying about each unit, and what it does not (paper section 3.1).

The paper reads Table 1 in two ways. A unit whose walker reached InfoNCE = gamma with a small
perturbation is **over-used**: a small change of it changes what the critic relies on (BigBiGAN's
level 1, mu 0.67 against 3.6-21 for levels 2-5). A unit whose walker grew a perturbation far larger than
any other while InfoNCE stayed low is **under-used**: the generator barely reads it (BigBiGAN's level 6,
mu 594.7 with InfoNCE 0.14). Everything between is **normal**. Each reading needs evidence, so the rule
says **undetermined**, with the reason, where a run cannot support a verdict:

1. zero gradient (the walker never received one): **under-used**, whatever the budget: no perturbation
   of the unit changes a pixel.
2. reached gamma: compared with the median mu of the *used* units (every unit but the under-used ones),
   where a unit stopped at the budget counts as the lower bound its mu is. The median then lies in
   [M_lo, M_hi]: M_lo with those units at their mu so far, M_hi with them at infinity. mu < OVER_USED x
   M_lo: **over-used**; mu >= OVER_USED x M_hi: **normal**; between: undetermined (the units still on
   the way decide). More budget only raises M_lo and lowers M_hi, so a verdict once given stands: a
   unit goes from undetermined to a verdict, never from over-used to normal or back. Fewer than two
   used units: undetermined (a lone mu has nothing to be small against).
3. stopped at the budget before the critic ever got below gamma: undetermined (the critic never learnt
   the task, so the walker never started).
4. stopped at the budget after that, over the last quarter of the unit's dynamics:
   - **under-used** when mu is at least UNDER_USED times the larger of the unit's typical latent norm
     E||z_k|| and every other unit's mu (at gamma, or so far: a unit still on the way counts too, so a
     walker that merely started early is not taken for an unused one), while InfoNCE stayed below
     gamma / 2 and was not rising (at its trend, gamma would take more than FLAT_HORIZON times the
     samples spent);
   - undetermined otherwise, mu a lower bound: InfoNCE still rising (the samples that would reach
     gamma at its trend are suggested), or the walker still growing while the critic is still learning
     (InfoNCE still falling: no trend to time the rise by, so at least GROWING_FACTOR times the budget
     is suggested), or both flat (the walker stalled: raise lr_walk, or the budget).

`keep` marks the units the paper's second phase (mlvgm.view_audit) may perturb: the normal ones, and
those still on the way at the budget (mu a lower bound, neither verdict shown yet) whose mu so far is
at least OVER_USED x M_lo. The audit then measures what perturbing each one does to the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

ZERO_GRADIENT = "zero gradient: the images do not depend on this unit"
CRITIC_NEVER_LEARNT = "budget: the critic never got below gamma"
OVER_USED = 0.25  # mu under this share of the median mu at gamma
UNDER_USED = 10.0  # mu over this many times the larger of the typical latent norm and any other unit's mu
FLAT_HORIZON = 10.0  # InfoNCE "not rising": gamma further away, at its trend, than this many budgets
GROWING = 1.05  # the walker's mean norm grew by more than this over the last quarter
GROWING_FACTOR = 4  # the budget suggested when there is no trend to time the rise by
TAIL = 0.25  # the share of a unit's dynamics its trends are read from


@dataclass(frozen=True)
class Verdict:
    verdict: str  # over-used, normal, under-used or undetermined
    reason: str  # one line: the evidence, or why there is none
    mu_lower_bound: bool = False  # the walker was still growing when the budget ran out
    suggested_samples: int | None = None  # a max_samples that would let the unit reach gamma
    timed: bool = False  # the suggestion comes from InfoNCE's rise (else it is a minimum, GROWING_FACTOR x)
    keep: bool = False  # a candidate level for positive views (normal, or on its way and above the bar)


def _tail_trend(rows: pd.DataFrame) -> tuple[float, float, float]:
    """(slope of the smoothed InfoNCE per sample, growth of the mean norm, last smoothed InfoNCE) over the
    last TAIL of a unit's dynamics rows."""
    rows = rows.sort_values("samples")
    tail = rows.iloc[-max(3, math.ceil(TAIL * len(rows))) :]
    if len(tail) < 2 or tail["samples"].nunique() < 2:
        return 0.0, 1.0, float(rows["infonce_ema"].iloc[-1])
    slope = float(np.polyfit(tail["samples"].to_numpy(float), tail["infonce_ema"].to_numpy(float), 1)[0])
    first, last = float(tail["norm"].iloc[0]), float(tail["norm"].iloc[-1])
    return slope, (last / first if first > 0 else math.inf), float(tail["infonce_ema"].iloc[-1])


def nice_budget(samples: float, batch: int) -> int:
    """samples rounded up to two significant figures and a whole number of batches."""
    magnitude = 10 ** max(0, math.floor(math.log10(max(samples, 1))) - 1)
    rounded = math.ceil(samples / magnitude) * magnitude
    return int(math.ceil(rounded / batch) * batch)


def median_bounds(table: pd.DataFrame, used: pd.Series) -> tuple[float, float]:
    """(M_lo, M_hi): the median mu of the `used` rows with a unit that stopped short of gamma at its mu so
    far, and at infinity."""
    mu = table.loc[used, "mu"].astype(float)
    lower_bound = ~table.loc[used, "reached"].astype(bool)
    return float(mu.median()), float(mu.where(~lower_bound, math.inf).median())


def judge(table: pd.DataFrame, dynamics: pd.DataFrame, gamma: float, *, batch_size: int) -> list[Verdict]:
    """One Verdict per row of `table` (columns level, stop, reached, infonce, mu, samples, z_norm), read
    with the rows of `dynamics` (unit, samples, infonce_ema, norm) of the same unit."""
    moved = table["stop"] != ZERO_GRADIENT
    first: dict[int, Verdict] = {}  # what needs no comparison with the other units
    for k, row in table.iterrows():
        stop = str(row["stop"])
        if stop == ZERO_GRADIENT:
            first[k] = Verdict("under-used", "zero gradient: no perturbation of it changes a pixel")
        elif stop.startswith(CRITIC_NEVER_LEARNT):
            first[k] = Verdict("undetermined", "the critic never got below gamma, so the walker never started: "
                                               "raise max_samples or lr_critic")  # fmt: skip
        elif not row["reached"]:
            others = table.loc[moved & (table.index != k), "mu"]
            largest_other = float(others.max()) if len(others) else 0.0  # mu so far where still on the way
            first[k] = _at_budget(row, dynamics[dynamics["unit"] == row["level"]], gamma, largest_other,
                                  batch_size)  # fmt: skip
    used = pd.Series([first.get(k) is None or first[k].verdict != "under-used" for k in table.index],
                     index=table.index)  # fmt: skip
    low, high = median_bounds(table, used) if used.sum() else (math.nan, math.nan)
    bar = OVER_USED * low
    out = []
    for k, row in table.iterrows():
        mu = float(row["mu"])
        if k in first:
            verdict = first[k]
            if verdict.mu_lower_bound and mu >= bar:
                verdict = replace(verdict, keep=True)
            out.append(verdict)
        elif used.sum() < 2:
            out.append(Verdict("undetermined", f"the only used unit: its mu {mu:.3g} has no other to be compared "
                                               "with"))  # fmt: skip
        elif mu < bar:
            out.append(Verdict("over-used", f"mu {mu:.3g} at gamma, under {OVER_USED:g} x the median mu of the used "
                                            f"units ({_median_text(low, high)})"))  # fmt: skip
        elif mu >= OVER_USED * high:
            out.append(Verdict("normal", f"mu {mu:.3g} at gamma, at least {OVER_USED:g} x the median mu of the used "
                                         f"units ({_median_text(low, high)})", keep=True))  # fmt: skip
        else:
            out.append(Verdict("undetermined", f"mu {mu:.3g} at gamma, against a median mu of the used units of "
                                               f"{_median_text(low, high)}: the units still on the way at the "
                                               "budget decide whether it is over-used"))  # fmt: skip
    return out


def _median_text(low: float, high: float) -> str:
    if low == high:
        return f"{low:.3g}"
    return f"at least {low:.3g}" if math.isinf(high) else f"{low:.3g} to {high:.3g}"


def _at_budget(row, rows: pd.DataFrame, gamma: float, largest_other: float, batch_size: int) -> Verdict:
    mu, samples = float(row["mu"]), int(row["samples"])
    slope, growth, infonce = _tail_trend(rows) if len(rows) else (0.0, 1.0, float(row["infonce"]))
    to_gamma = (gamma - infonce) / slope if slope > 0 else math.inf  # samples, at the current trend
    scale = max(float(row.get("z_norm", 0.0) or 0.0), largest_other)
    if scale > 0 and mu >= UNDER_USED * scale and infonce < gamma / 2 and to_gamma > FLAT_HORIZON * samples:
        return Verdict("under-used", f"mu {mu:.3g}, {mu / scale:.0f} x the larger of the latent's typical norm "
                                     "and the largest mu of the other units, left InfoNCE at "
                                     f"{infonce:.2f}")  # fmt: skip
    if math.isfinite(to_gamma):
        suggested = nice_budget(1.25 * (samples + to_gamma), batch_size)
        return Verdict("undetermined", f"budget spent while InfoNCE was still rising ({infonce:.2f}, gamma "
                                       f"{gamma:g}): mu is a lower bound", True, suggested, True)  # fmt: skip
    if growth > GROWING:
        suggested = nice_budget(GROWING_FACTOR * samples, batch_size)
        return Verdict("undetermined", f"budget spent while the walker was still growing (x{growth:.2f} over the "
                                       "last quarter) and the critic still learning (InfoNCE falling): mu is a "
                                       "lower bound", True, suggested)  # fmt: skip
    return Verdict("undetermined", f"the walker stalled at mu {mu:.3g} with InfoNCE {infonce:.2f} below gamma: "
                                   "raise lr_walk or max_samples")  # fmt: skip


def advice(table: pd.DataFrame, *, max_samples: int) -> str:
    """The last line of a quantification: how many units reached gamma, and the budget the others need
    (from the table's reached, suggested_samples and suggestion_timed columns)."""
    reached = [str(level) for level, hit in zip(table["level"], table["reached"], strict=True) if hit]
    text = f"{len(reached)} of {len(table)} units reached gamma" + (f" ({', '.join(reached)})" if reached else "")
    waiting = table[table["suggested_samples"] > 0]
    if waiting.empty:
        return text + "."
    timed, untimed = waiting[waiting["suggestion_timed"]], waiting[~waiting["suggestion_timed"]]
    parts = [
        f"{row['level']} about {int(row['suggested_samples']):,} by its InfoNCE's rise" for _, row in timed.iterrows()
    ]
    if len(untimed):
        parts.append(f"{', '.join(map(str, untimed['level']))} no rise to time yet (critics still learning), so at "
                     f"least {int(untimed['suggested_samples'].max()):,}")  # fmt: skip
    budget = int(waiting["suggested_samples"].max())
    return (f"{text}; still on the way at the budget (undetermined, mu lower bounds): {'; '.join(parts)}. "
            f"Try --max_samples {budget} (this run: {max_samples:,}).")  # fmt: skip
