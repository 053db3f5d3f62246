"""The paper's second phase as a rule: from the audit of each kept level (mlvgm.view_audit), one sigma per level.

The rule (RULE, written down before any Table 2 result was read; docs/quantify.md) is label-free: it reads
the image, never the factors.

1. **Admissible.** A sigma is admissible for a level while the positives' share of saturated pixels (at 0
   or 1) stays within SATURATION_MARGIN of the anchors' own, at it and at every smaller sigma of the grid:
   beyond that the positive is being destroyed, not changed.
2. **Measurable.** A level whose mean absolute pixel change never reaches MEASURABLE (one 8-bit grey
   level) at an admissible sigma is dropped: perturbing it changes nothing a network could see.
3. **The same change for every level, as large as admissible.** The target change is the smallest of the
   kept levels' largest admissible changes; each level gets the sigma at which its change equals the
   target, interpolated log-log between the two grid sigmas around it (the smallest grid sigma if even
   that changes the image more). The audit then measures each level at its chosen sigma.

The functions here are pure pandas: the audit (torch) measures, this module decides.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

RULE = "equal-change-v1"
SATURATION_MARGIN = 0.02  # positives may have at most 2 points more saturated pixels than their anchors
MEASURABLE = 1 / 255  # mean |positive - anchor| of at least one 8-bit grey level
DESTROYED = 0.5  # a training run's positives are destroyed when over half their pixels saturate beyond the anchors'

RULE_TEXT = (
    f"{RULE}: per level, the admissible sigmas are those up to the first whose positives have more than "
    f"{SATURATION_MARGIN:.0%} more saturated pixels than their anchors; a level whose mean absolute pixel change "
    f"never reaches 1/255 at an admissible sigma is dropped; every other level gets the sigma whose change equals "
    "the smallest of their largest admissible changes (log-log interpolation on the grid). Labels are never read."
)


def admissible(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of one level's sweep (sorted by sigma) up to its first inadmissible sigma."""
    rows = rows.sort_values("sigma")
    bad = (rows["saturated_excess"] > SATURATION_MARGIN).to_numpy()
    stop = int(np.argmax(bad)) if bad.any() else len(rows)
    return rows.iloc[:stop]


def choose(sweep: pd.DataFrame) -> pd.DataFrame:
    """One row per level of `sweep` (columns level, sigma, pixel_change, saturated_excess): its largest
    admissible change, whether it is kept, the chosen sigma (NaN when dropped) and why."""
    out = []
    for level, rows in sweep.groupby("level", sort=False):
        ok = admissible(rows)
        largest = float(ok["pixel_change"].max()) if len(ok) else 0.0
        if not len(ok):
            reason = (f"even sigma {rows['sigma'].min():g} saturates {rows['saturated_excess'].iloc[0]:.0%} more "
                      "pixels than the anchors: the grid needs smaller sigmas")  # fmt: skip
        elif largest < MEASURABLE:
            reason = (f"changes the image by at most {largest:.2g} (< 1/255) at admissible sigmas (up to "
                      f"{ok['sigma'].max():g}): it does not change the image measurably")  # fmt: skip
        else:
            reason = ""
        out.append({"level": level, "largest_admissible_change": largest,
                    "largest_admissible_sigma": float(ok["sigma"].max()) if len(ok) else math.nan,
                    "kept": not reason, "reason": reason})  # fmt: skip
    chosen = pd.DataFrame(out)
    if not chosen["kept"].any():
        chosen["sigma"] = math.nan
        chosen["target_change"] = math.nan
        return chosen
    target = float(chosen.loc[chosen["kept"], "largest_admissible_change"].min())
    sigmas = []
    for k, row in chosen.iterrows():
        if not row["kept"]:
            sigmas.append(math.nan)
            continue
        ok = admissible(sweep[sweep["level"] == row["level"]])
        sigmas.append(sigma_for(ok["sigma"].to_numpy(float), ok["pixel_change"].to_numpy(float), target))
        chosen.loc[k, "reason"] = (f"the sigma of a mean pixel change of {target:.3g}, the smallest of the kept "
                                   "levels' largest admissible changes")  # fmt: skip
    chosen["sigma"] = sigmas
    chosen["target_change"] = target
    return chosen


def sigma_for(sigmas: np.ndarray, changes: np.ndarray, target: float) -> float:
    """The sigma at which the change reaches `target`: log-log interpolation between the grid sigmas around
    it; the smallest sigma if it already changes more, the largest if none reaches it."""
    above = np.nonzero(changes >= target)[0]
    if not len(above):
        return float(sigmas[-1])
    i = int(above[0])
    if i == 0 or changes[i - 1] <= 0:
        return float(sigmas[i])
    x0, x1 = math.log(sigmas[i - 1]), math.log(sigmas[i])
    y0, y1 = math.log(changes[i - 1]), math.log(changes[i])
    if y1 <= y0:
        return float(sigmas[i])
    return float(math.exp(x0 + (math.log(target) - y0) * (x1 - x0) / (y1 - y0)))
