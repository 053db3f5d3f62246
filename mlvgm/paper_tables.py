"""Tables 1 and 2 of `python -m mlvgm.experiments` from per-seed results: the statistics over seeds, the paired
comparisons with their 95% intervals, and the markdown and plots. Pure functions of DataFrames (no files read)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pandas as pd

from mlvgm.plots import error_bars, panels
from mlvgm.probes import KNN_K

# Two-sided 95% critical values of Student's t for 1..30 degrees of freedom (any statistics table).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045,
         2.042)  # fmt: skip
_COMPARISONS = (("ml-random", "random"), ("ml-learned", "learned"))  # the paper's: ML against single-latent


def t_critical(df: int) -> float:
    """t with P(|T| <= t) = 0.95 for `df` degrees of freedom; past 30, the Cornish-Fisher expansion (error < 1e-4)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def summarise_table2(per_run: pd.DataFrame) -> pd.DataFrame:
    """Mean +- std over seeds of each (method, row) and factor; 'random init' is the untrained network."""
    trained = per_run[per_run["encoder"] == "trained"]
    baseline = per_run[(per_run["encoder"] == "random init") & (per_run["row"] == "synth")].assign(row="random init")
    if "minutes" in baseline:  # an untrained network took no training time
        baseline = baseline.assign(minutes=math.nan)
    both = pd.concat([trained, baseline])
    metrics = [m for m in ("linear_top1", "knn_top1", "minutes") if m in both]
    grouped = both.groupby(["method", "row", "factor"], sort=False)[metrics]
    out = grouped.agg(["mean", "std", "count"])
    out.columns = [f"{metric}_{stat}" for metric, stat in out.columns]
    return out.reset_index()


def paired_differences(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per seed and factor: ML minus single-latent (same method and seed), and every trained row minus its own
    untrained network (same seed, so the same initial weights): the paper's comparison and the check that
    training taught the encoder anything."""
    trained = per_run[per_run["encoder"] == "trained"].set_index(["method", "row", "seed", "factor"])
    untrained = per_run[per_run["encoder"] == "random init"].set_index(["method", "row", "seed", "factor"])
    rows = []
    for (method, row, seed, factor), value in trained[["linear_top1", "knn_top1"]].iterrows():
        pairs = [(f"{row} - {theirs}", trained.loc[(method, theirs, seed, factor)]) for ours, theirs in _COMPARISONS
                 if row == ours and (method, theirs, seed, factor) in trained.index]  # fmt: skip
        if (method, row, seed, factor) in untrained.index:
            pairs.append((f"{row} - random init", untrained.loc[(method, row, seed, factor)]))
        for comparison, other in pairs:
            rows.append({"method": method, "comparison": comparison, "seed": seed, "factor": factor,
                         "linear_top1": value["linear_top1"] - other["linear_top1"],
                         "knn_top1": value["knn_top1"] - other["knn_top1"]})  # fmt: skip
    return pd.DataFrame(rows)


def summarise_paired(paired: pd.DataFrame, metric: str = "linear_top1") -> pd.DataFrame:
    """Mean, std and the 95% interval (Student's t over seeds) of each comparison; `resolved` is False where the
    interval holds 0, i.e. the difference is within the seed noise (or there is one seed)."""
    rows = []
    for (method, comparison, factor), group in paired.groupby(["method", "comparison", "factor"], sort=False):
        values = group[metric]
        n, mean = len(values), float(values.mean())
        std = float(values.std()) if n > 1 else math.nan
        half = t_critical(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
        rows.append({"method": method, "comparison": comparison, "factor": factor, "mean": mean, "std": std,
                     "seeds": n, "ci95": half, "resolved": n > 1 and abs(mean) > half})  # fmt: skip
    return pd.DataFrame(rows)


# --- markdown ----------------------------------------------------------------------------------------


def table1_markdown(table: pd.DataFrame) -> str:
    lines = [
        "| level | seeds | mu (mean +- std) | sigma | verdict | agreement | verdicts |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        bound = ">= " if r.get("mu_lower_bounds", 0) else ""  # a seed's budget ran out on the way to gamma
        lines.append(f"| {r['level']} | {r['seeds']} | {bound}{r['mu_mean']:.3g} +- {r['mu_std']:.2g} | "
                     f"{r['sigma_mean']:.3g} | {r['verdict']} | {r['agreement']:.0%} | {r['verdicts']} |")  # fmt: skip
    if "mu_lower_bounds" in table and table["mu_lower_bounds"].any():
        lines += ["", ">= : in at least one seed the walker's budget ran out before InfoNCE reached gamma, so that "
                  "seed's mu is a lower bound (mlvgm.verdicts)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _by_factor(summary: pd.DataFrame, metric: str, *, minutes: bool) -> list[str]:
    factors = list(dict.fromkeys(summary["factor"]))
    minutes = minutes and "minutes_mean" in summary
    lines = ["| method | row | " + " | ".join(factors) + (" | minutes per run (train + probes) |" if minutes else " |"),
             "|---|---|" + "---|" * (len(factors) + minutes)]  # fmt: skip
    for (method, row), group in summary.groupby(["method", "row"], sort=False):
        cells = group.set_index("factor")
        values = [f"{cells.loc[f, f'{metric}_mean']:.3f} +- {cells.loc[f, f'{metric}_std']:.3f}"
                  if f in cells.index else "" for f in factors]  # fmt: skip
        if minutes:
            spent = cells["minutes_mean"].iloc[0]
            values.append("" if spent != spent else f"{spent:.1f}")  # the untrained baseline has no time
        lines.append(f"| {method} | {row} | " + " | ".join(values) + " |")
    return lines


def _comparisons(stats: pd.DataFrame, title: str) -> list[str]:
    factors = list(dict.fromkeys(stats["factor"]))
    lines = [title, "", "| method | comparison | " + " | ".join(factors) + " |", "|---|---|" + "---|" * len(factors)]
    for (method, comparison), group in stats.groupby(["method", "comparison"], sort=False):
        cells = group.set_index("factor")
        values = []
        for f in factors:
            if f not in cells.index:
                values.append("")
                continue
            c = cells.loc[f]
            interval = "" if c["ci95"] != c["ci95"] else f" +- {c['ci95']:.3f}"
            values.append(f"{'**' if c['resolved'] else ''}{c['mean']:+.3f}{interval}{'**' if c['resolved'] else ''}")
        lines.append(f"| {method} | {comparison} | " + " | ".join(values) + " |")
    return [*lines, ""]


def table2_markdown(summary: pd.DataFrame, paired: pd.DataFrame) -> str:
    """Linear and kNN top-1 per factor (mean +- std over seeds; `shape` is the downstream class, the rest
    transfer), then the paired comparisons with their 95% intervals."""
    linear, knn = _by_factor(summary, "linear_top1", minutes=True), _by_factor(summary, "knn_top1", minutes=False)
    lines = ["Linear probe, top-1 (mean +- std over seeds):", "", *linear, "",
             f"kNN (weighted, k = {KNN_K}), top-1:", "", *knn, ""]  # fmt: skip
    if not paired.empty:
        stats = summarise_paired(paired)
        ml = stats[~stats["comparison"].str.endswith("random init")]
        init = stats[stats["comparison"].str.endswith("random init")]
        note = ("Paired per seed (same method, same seed), linear top-1: mean +- the half-width of its 95% "
                "interval (Student's t over seeds). **Bold**: the interval excludes 0; otherwise the difference "
                "is within the seed noise at this scale.")  # fmt: skip
        lines += [note, ""]
        if not ml.empty:
            lines += _comparisons(ml, "ML against single-latent views:")
        if not init.empty:
            lines += _comparisons(init, "Each trained encoder against its untrained network (what training taught):")
    return "\n".join(lines).rstrip() + "\n"


# --- plots -------------------------------------------------------------------------------------------


def plot_table1(table: pd.DataFrame, path: Path, world: str = "shapes world") -> None:
    error_bars(list(table["level"]), table["mu_mean"], table["mu_std"], path, ylabel="mu: mean ||T(z) - z||",
               title=f"Table 1, {world}: mu +- std over {int(table['seeds'].max())} seeds", log=True)  # fmt: skip


def plot_table2(summary: pd.DataFrame, path: Path, per_run: pd.DataFrame | None = None,
                chance: dict[str, float] | None = None, world: str = "shapes world") -> None:  # fmt: skip
    """Linear top-1 per factor, one panel each: every (method, row) as mean +- std with its seeds as dots, the
    untrained networks grey, chance dashed."""
    data = {}
    for factor, group in summary.groupby("factor", sort=False):
        bars = []
        for _, r in group.iterrows():
            values = []
            if per_run is not None:
                encoder = "random init" if r["row"] == "random init" else "trained"
                row = "synth" if r["row"] == "random init" else r["row"]
                match = per_run[(per_run["method"] == r["method"]) & (per_run["row"] == row)
                                & (per_run["factor"] == factor) & (per_run["encoder"] == encoder)]  # fmt: skip
                values = list(match["linear_top1"])
            bars.append((f"{r['method']} {r['row']}", r["linear_top1_mean"], r["linear_top1_std"], values))
        data[str(factor)] = bars
    grey = tuple(f"{m} random init" for m in summary["method"].unique())
    panels(data, path, ylabel="linear top-1", grey=grey, lines=chance,
           title=f"Table 2, {world}: linear top-1 per factor (mean +- std over seeds; dots: seeds)")  # fmt: skip


# --- Table 1 against a VAE's own account of its levels ----------------------------------------------------


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); nan for fewer than 2 points or a constant side."""
    if len(a) < 2:
        return float("nan")
    ra, rb = pd.Series(a).rank(), pd.Series(b).rank()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(ra.corr(rb))


def spearman_exact(a: list[float], b: list[float]) -> tuple[float, float]:
    """Spearman's rho of (a, b) and its exact one-sided p-value for a negative association: the share of the
    n! pairings of a with a permutation of b whose rho is at most the observed one (n <= 8: 40,320 pairings)."""
    if not 2 <= len(a) <= 8 or len(a) != len(b):
        raise ValueError(f"spearman_exact takes 2 to 8 pairs, got {len(a)} and {len(b)} values")
    observed = spearman(a, b)
    if math.isnan(observed):
        return observed, float("nan")
    rhos = [spearman(a, list(p)) for p in itertools.permutations(b)]
    return observed, sum(r <= observed + 1e-12 for r in rhos) / len(rhos)


def kl_agreement(
    table: pd.DataFrame, kl_nats: list[float], *, collapsed_nats: float = 1.0,
    gains: list[float] | None = None, dims: list[int] | None = None,
) -> tuple[pd.DataFrame, dict]:  # fmt: skip
    """Quantification's Table 1 beside the hierarchical VAE's per-level KL (nats per image, held out).

    A level whose KL is under `collapsed_nats` per image is one the VAE left (nearly) unused: its posterior
    is its prior, so it tells the decoder less than one nat about any image, and its verdict should be
    under-used. (An absolute threshold, not a share of the total: the fine levels' pixel detail makes the total
    large without making the coarse levels less used.) Among the other levels, mu should grow from coarse
    to fine (Spearman's rho of mu against the level's index near +1). With each level's RMS gain and latent
    dimension, the ordering test docs/embedded.md fixed: over the used levels, rho between mu per coordinate
    (mu / sqrt(d)) and the gain, predicted negative, with its exact p-value. Returns the per-level table and
    the summary."""
    if len(kl_nats) != len(table):
        raise ValueError(f"{len(kl_nats)} KL values for {len(table)} levels")
    total = sum(kl_nats)
    rows = table[["level", "mu_mean", "mu_std", "verdict", "verdicts"]].copy()
    rows["kl_nats"] = kl_nats
    rows["kl_share"] = [k / total if total > 0 else 0.0 for k in kl_nats]
    rows["collapsed"] = rows["kl_nats"] < collapsed_nats
    used = rows[~rows["collapsed"]]
    collapsed = [str(v) for v in rows.loc[rows["collapsed"], "level"]]
    under = [str(v) for v in rows.loc[rows["verdict"] == "under-used", "level"]]
    summary = {
        "collapsed_by_kl": collapsed,
        "under_used_by_quantification": under,
        "unused_agree": collapsed == under,
        "rho_mu_vs_level": spearman(list(range(len(used))), list(used["mu_mean"])),
        "rho_mu_vs_kl": spearman(list(used["kl_nats"]), list(used["mu_mean"])),
        "mu_increasing": bool(used["mu_mean"].is_monotonic_increasing),
        "collapsed_nats": collapsed_nats,
    }
    if gains is not None and dims is not None:
        rows["rms_gain"] = gains
        rows["mu_per_coordinate"] = [m / math.sqrt(d) for m, d in zip(rows["mu_mean"], dims, strict=True)]
        used = rows[~rows["collapsed"]]
        rho, p = spearman_exact(list(used["mu_per_coordinate"]), list(used["rms_gain"]))
        summary |= {"rho_mu_per_coordinate_vs_gain": rho, "p_negative": p}
    return rows.reset_index(drop=True), summary


def kl_markdown(rows: pd.DataFrame, summary: dict) -> str:
    lines = ["| level | KL per image (nats) | share of KL | VAE | mu (mean +- std) | verdict (modal) | verdicts |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for _, r in rows.iterrows():
        state = "collapsed" if r["collapsed"] else "used"
        lines.append(f"| {r['level']} | {r['kl_nats']:.3g} | {r['kl_share']:.1%} | {state} | {r['mu_mean']:.3g} +- "
                     f"{r['mu_std']:.2g} | {r['verdict']} | {r['verdicts']} |")  # fmt: skip
    unused = ("agree" if summary["unused_agree"] else "disagree") + (
        f": collapsed by KL {', '.join(summary['collapsed_by_kl']) or 'none'}; under-used by quantification "
        f"{', '.join(summary['under_used_by_quantification']) or 'none'}"
    )
    lines += ["",
              f"- Unused levels (KL under {summary['collapsed_nats']:g} nat per image, against under-used): "
              f"{unused}.",
              f"- Ordering over the used levels: mu {'grows' if summary['mu_increasing'] else 'does not grow'} "
              f"from coarse to fine (Spearman rho of mu against the level {summary['rho_mu_vs_level']:+.2f}; "
              f"against the level's KL {summary['rho_mu_vs_kl']:+.2f}: one ordering read twice)."]  # fmt: skip
    if "rho_mu_per_coordinate_vs_gain" in summary:
        lines.append(f"- The ordering test (docs/embedded.md): Spearman rho of mu per coordinate against the level's "
                     f"RMS gain {summary['rho_mu_per_coordinate_vs_gain']:+.2f}, exact one-sided p for a negative "
                     f"association {summary['p_negative']:.3f}.")  # fmt: skip
    return "\n".join(lines) + "\n"
