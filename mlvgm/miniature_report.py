"""The analysis of the miniature and of its pilot, exactly as docs/experiments.md pre-registers it, from the
published jobs' probes: the pilot's decision (T_x, go or no-go), the arms' table, the primary test (or its
equivalence test), the Holm-corrected secondaries, the figure and README.md. Every sentence it writes is a
number with its interval or a statement of what the data cannot tell.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mlvgm import miniature_design as design
from mlvgm.experiments_config import ExperimentsConfig
from mlvgm.io import atomic_write_json, atomic_write_text
from mlvgm.paired_stats import holm, paired_t, tost
from mlvgm.plots import paired_arms
from mlvgm.progress import duration

METRIC = {"linear": "linear_top1", "knn": "knn_top1"}


def values(per_run: pd.DataFrame, arm: str, probe: str, factor: str = "shape") -> pd.Series:
    """Per seed: the arm's top-1 on the factor ("init": the seed's untrained network)."""
    rows = per_run[(per_run["arm"] == arm) & (per_run["factor"] == factor)]
    return rows.set_index("seed")[METRIC[probe]].sort_index()


def paired(per_run: pd.DataFrame, a: str, b: str, probe: str, factor: str = "shape") -> pd.Series:
    """a - b per seed, over the seeds where both are done."""
    x, y = values(per_run, a, probe, factor), values(per_run, b, probe, factor)
    common = x.index.intersection(y.index)
    return x[common] - y[common]


def comparison(per_run: pd.DataFrame, a: str, b: str, probe: str, factor: str = "shape") -> dict[str, object]:
    d = paired(per_run, a, b, probe, factor)
    row = {"comparison": f"{a} - {b}", "probe": probe, "factor": factor, "seeds": len(d)}
    if len(d) >= 2:
        row |= paired_t(d.tolist(), alpha=design.ALPHA)
    return row


def fmt_interval(row: dict, digits: int = 3) -> str:
    return f"{row['mean']:+.{digits}f} [{row['low']:+.{digits}f}, {row['high']:+.{digits}f}]"


def fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else "< 0.001"


# --- the pilot ---------------------------------------------------------------------------------------


def pilot_decision(per_run: pd.DataFrame, budget: int) -> dict[str, object]:
    """The pre-registered rule: the T_x under which M gains most on shape (linear) over its untrained network,
    crop + flip when the two are within TX_TIE; go when M's gain under it reaches GO_GAIN."""
    init = values(per_run, "init", "linear")
    gains = {}
    for tx in design.PILOT_TX:
        m = per_run[(per_run["arm"] == "M") & (per_run["augment"] == tx) & (per_run["factor"] == "shape")]
        if m.empty or init.empty:
            return {}
        gains[tx] = float(m["linear_top1"].iloc[0] - init.iloc[0])
    first, second = design.PILOT_TX
    augment = first if abs(gains[first] - gains[second]) <= design.TX_TIE else max(gains, key=gains.get)
    go = gains[augment] >= design.GO_GAIN
    why = (f"M gains {gains[augment]:+.3f} on shape over its untrained network with T_x {augment}, "
           f"{'at least' if go else 'below'} the pre-registered {design.GO_GAIN:.2f}")  # fmt: skip
    return {"augment": augment, "go": go, "why": why, "m_gain": gains, "budget": budget}


def pilot_table(per_run: pd.DataFrame) -> str:
    init = per_run[per_run["arm"] == "init"].set_index("factor")
    factors = list(dict.fromkeys(per_run["factor"]))
    lines = ["| arm | T_x | " + " | ".join(f"{f} (gain)" for f in factors) + " | kNN shape | minutes |",
             "|---|---|" + "---|" * (len(factors) + 2)]  # fmt: skip
    for (arm, tx), group in per_run[per_run["arm"] != "init"].groupby(["arm", "augment"], sort=False):
        cells = group.set_index("factor")
        gains = [f"{cells.loc[f, 'linear_top1']:.3f} ({cells.loc[f, 'linear_top1'] - init.loc[f, 'linear_top1']:+.3f})"
                 for f in factors]  # fmt: skip
        lines.append(f"| {arm} | {tx} | " + " | ".join(gains) + f" | {cells.loc['shape', 'knn_top1']:.3f} | "
                     f"{cells['seconds'].iloc[0] / 60:.1f} |")  # fmt: skip
    lines.append("| init | | " + " | ".join(f"{init.loc[f, 'linear_top1']:.3f}" for f in factors) +
                 f" | {init.loc['shape', 'knn_top1']:.3f} | |")  # fmt: skip
    return "\n".join(lines) + "\n"


# --- the miniature -----------------------------------------------------------------------------------


def analyse(per_run: pd.DataFrame) -> dict[str, object]:
    """The pre-registered tests: the primary (and its TOST when not significant), the secondaries with Holm's
    adjusted p-values, and every arm's gain over its untrained network."""
    arms = [a for a in design.ARMS if (per_run["arm"] == a).any()]
    out: dict[str, object] = {"arms": {}}
    for arm in arms:
        gain = comparison(per_run, arm, "init", "linear")
        learned = gain.get("mean", math.nan) >= design.LEARNS_GAIN and gain.get("low", math.nan) > 0
        knn = comparison(per_run, arm, "init", "knn")
        out["arms"][arm] = {"gain": gain, "knn_gain": knn, "learns": bool(learned)}
    a, b, probe = design.PRIMARY
    if {a, b} <= set(arms):
        primary = comparison(per_run, a, b, probe)
        if "p" in primary:
            primary["significant"] = primary["p"] < design.ALPHA
            if not primary["significant"]:
                primary["tost"] = tost(paired(per_run, a, b, probe).tolist(), design.EQUIVALENCE_MARGIN,
                                       alpha=design.ALPHA)  # fmt: skip
        out["primary"] = primary
    secondary = [comparison(per_run, x, y, probe) for x, y, probe in design.SECONDARY if {x, y} <= set(arms)]
    tested = [row for row in secondary if "p" in row]
    for row, adjusted in zip(tested, holm([row["p"] for row in tested]), strict=True):
        row["p_holm"] = adjusted
        row["significant"] = adjusted < design.ALPHA
    out["secondary"] = secondary
    return out


def arms_table(per_run: pd.DataFrame, analysis: dict) -> str:
    factors = list(dict.fromkeys(per_run["factor"]))
    collapse = "z_std" in per_run and per_run["z_std"].notna().any()  # SimSiam's per-dimension feature std
    lines = ["| arm | seeds | shape, linear | gain over init [95% CI] | learned | shape, kNN | kNN gain [95% CI] | "
             + " | ".join(f"{f}, linear" for f in factors if f != "shape") + " | final loss |"
             + (" feature std x sqrt(d) |" if collapse else ""),
             "|---|---|---|---|---|---|---|" + "---|" * (len(factors) + collapse)]  # fmt: skip
    for arm in [*analysis["arms"], "init"]:
        shape, knn = values(per_run, arm, "linear"), values(per_run, arm, "knn")
        others = [values(per_run, arm, "linear", f) for f in factors if f != "shape"]
        if arm == "init":
            gain = learned = kgain = ""
        else:
            row = analysis["arms"][arm]
            gain = fmt_interval(row["gain"]) if "mean" in row["gain"] else ""
            kgain = fmt_interval(row["knn_gain"]) if "mean" in row["knn_gain"] else ""
            learned = "yes" if row["learns"] else "no"
        cells = [f"{v.mean():.3f} +- {v.std():.3f}" for v in (shape, knn, *others)]
        label = "init (untrained)" if arm == "init" else f"{arm}: {design.ARM_NAMES[arm]}"
        runs = per_run[(per_run["arm"] == arm) & (per_run["factor"] == "shape")]
        loss = "" if arm == "init" else f"{runs['final_loss'].mean():.3f}"
        std = "" if arm == "init" else f"{runs['z_std'].mean():.3f}"
        lines.append(f"| {label} | {len(shape)} | {cells[0]} | {gain} | {learned} | {cells[1]} | {kgain} | "
                     + " | ".join(cells[2:]) + f" | {loss} |" + (f" {std} |" if collapse else ""))  # fmt: skip
    return "\n".join(lines) + "\n"


def tests_table(analysis: dict) -> str:
    lines = ["| endpoint | comparison | probe | seeds | mean [95% CI] | p | p (Holm) | verdict |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    rows = ([("primary", analysis["primary"])] if "primary" in analysis else []) + \
        [("secondary", row) for row in analysis["secondary"]]  # fmt: skip
    for kind, row in rows:
        if "p" not in row:
            lines.append(f"| {kind} | {row['comparison']} | {row['probe']} | {row['seeds']} | too few seeds | | | |")
            continue
        if kind == "primary":
            verdict = primary_verdict(row)
            holm_p = ""
        else:
            verdict, holm_p = ("differ" if row["significant"] else "no difference shown"), fmt_p(row["p_holm"])
        lines.append(f"| {kind} | {row['comparison']} | {row['probe']} | {row['seeds']} | {fmt_interval(row)} | "
                     f"{fmt_p(row['p'])} | {holm_p} | {verdict} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def primary_verdict(row: dict) -> str:
    """differ, equivalent (TOST), or undecided: the pre-registered reading of the primary."""
    if row["significant"]:
        return "differ"
    test, margin = row["tost"], design.EQUIVALENCE_MARGIN
    if test["equivalent"]:
        return f"equivalent within +-{margin} (TOST p {fmt_p(test['p'])})"
    return (f"undecided: neither a difference nor equivalence within +-{margin} (TOST p {fmt_p(test['p'])}, "
            f"90% CI [{test['low']:+.3f}, {test['high']:+.3f}])")  # fmt: skip


def provenance_lines(per_run: pd.DataFrame) -> list[str]:
    commits = sorted(set(per_run["commit"]))
    dirty = per_run.groupby("job")["dirty"].first()
    compute = per_run.groupby("job")["seconds"].first().sum()
    own = int(per_run.groupby("job")["own_outputs"].first().sum()) if "own_outputs" in per_run else 0
    own_text = f" ({own} more changed only this experiment's own published outputs)" if own else ""
    lines = [f"- jobs: {per_run['job'].nunique()} published, run at commit{'s' if len(commits) > 1 else ''} "
             f"{', '.join(commits)}; {int(dirty.sum())} of them from a dirty tree{own_text}",
             f"- compute: {duration(compute)} in all (training and probes)"]  # fmt: skip
    if "cpu" in per_run:
        cpus = per_run.groupby("job")["cpu"].first()
        lines.append("- hardware: " + ", ".join(f"{cpu} ({n} jobs)" for cpu, n in cpus.value_counts().items()))
        mixed = sorted(int(s) for s, g in per_run.groupby("seed") if g["cpu"].nunique() > 1)
        if mixed:
            many = len(mixed) > 1
            lines.append(f"- seed{'s' if many else ''} {', '.join(map(str, mixed))} ran on more than one machine, so "
                         f"{'their' if many else 'its'} paired differences include any difference between the "
                         "machines' arithmetic")  # fmt: skip
    return lines


def write_report(config: ExperimentsConfig, jobs: list, per_run: pd.DataFrame, out: Path,
                 skipped: dict[str, str]) -> list[str]:  # fmt: skip
    if per_run.empty:
        atomic_write_text(out / "README.md", f"# {config.name}\n\nNo job has finished yet.\n")
        return ["README.md"]
    atomic_write_text(out / "probes.csv", per_run.to_csv(index=False))
    written = ["probes.csv"]
    if config.name == "pilot":
        text = pilot_report(config, per_run, out)
        written += ["decision.json"] if (out / "decision.json").exists() else []
    else:
        analysis = analyse(per_run)
        atomic_write_json(out / "tests.json", analysis)
        text = miniature_report(config, per_run, analysis, out)
        written += ["tests.json", "miniature.png"]
    if skipped:
        text += "\n## Skipped\n\n" + "".join(f"- {name}: {why}\n" for name, why in skipped.items())
    atomic_write_text(out / "README.md", text)
    return [*written, "README.md"]


def pilot_report(config: ExperimentsConfig, per_run: pd.DataFrame, out: Path) -> str:
    decision = pilot_decision(per_run, config.budget)
    lines = ["# Pilot of the paper in miniature", "",
             f"`python -m mlvgm.experiments pilot`: arms {', '.join(design.PILOT_ARMS)} x T_x "
             f"{', '.join(design.PILOT_TX)} at seed {design.PILOT_SEED}, the design in "
             "[docs/experiments.md](../../../docs/experiments.md#the-miniature-pre-registered).", "",
             *provenance_lines(per_run), "",
             "Linear probe top-1 (gain over the seed's untrained network), one seed, "
             f"{per_run['seed'].iloc[0]}, {config.budget} steps of {config.batch} pairs: one run per cell, so no "
             f"interval; the probe's own 95% binomial half-width on {config.eval_test:,} test images is at most "
             f"{100 * 1.96 * 0.5 / math.sqrt(config.eval_test):.1f} points.", "", pilot_table(per_run)]  # fmt: skip
    if decision:
        atomic_write_json(out / "decision.json", decision)
        lines += ["## Decision (the pre-registered rule)", "", f"- T_x of every arm: `{decision['augment']}`",
                  f"- steps per run: {decision['budget']}",
                  f"- {'go' if decision['go'] else 'no-go'}: {decision['why']}", ""]  # fmt: skip
    return "\n".join(lines)


def miniature_report(config: ExperimentsConfig, per_run: pd.DataFrame, analysis: dict, out: Path) -> str:
    classes = int(per_run[per_run["factor"] == "shape"]["classes"].iloc[0])
    paired_arms(per_run, analysis, out / "miniature.png", chance=1 / classes, ceiling=design.CEILING)
    augment = per_run[per_run["arm"] != "init"]["augment"].iloc[0]
    complete = per_run.groupby("seed")["arm"].nunique()
    complete = int((complete == len(analysis["arms"]) + 1).sum())  # seeds with every arm and the init probe
    interim = [] if complete >= config.seeds else [
        f"**Interim: {complete} of {config.seeds} seeds complete.** The pre-registration reads its tests at "
        f"{config.seeds} seeds, fixed in advance; the tests below are an interim look at the seeds done so far, "
        "not the result, and no decision is taken on them.", ""]  # fmt: skip
    lines = ["# The paper in miniature: a pre-registered comparison of positive views", "", *interim,
             "`python -m mlvgm.experiments miniature`: SimCLR on the shapes world at 32 px, arms "
             f"{', '.join(analysis['arms'])} paired by seed, T_x `{augment}` for every arm, {config.budget} steps of "
             f"{config.batch} pairs, width {config.width}; probes on {config.eval_train:,} + {config.eval_test:,} "
             "held-out images per seed. The design, its tests and thresholds were committed before the first job: "
             "[docs/experiments.md](../../../docs/experiments.md#the-miniature-pre-registered).", "",
             *provenance_lines(per_run), "",
             "## Arms", "",
             f"Top-1 accuracy, mean +- std over seeds; gains are paired with the same seed's untrained network, "
             f"95% CI (Student's t). Chance on shape is {1 / classes:.3f}; the supervised ceiling (a CNN trained on "
             f"labelled real images) is {design.CEILING}. An arm has learned if its mean gain is at least "
             f"{design.LEARNS_GAIN} and its interval excludes 0. Position, colour and background are invariance "
             "diagnostics: the views are meant to remove some of them, so lower is not worse.", "",
             arms_table(per_run, analysis),
             "## Tests", "",
             f"Shape, paired by seed. The primary is a two-sided paired t-test at alpha {design.ALPHA}; when it "
             f"is not significant, TOST with margin +-{design.EQUIVALENCE_MARGIN}. The secondaries' p-values are "
             "Holm-adjusted over the four of them; their intervals are not.", "",
             tests_table(analysis), "", "![arms](miniature.png)", ""]  # fmt: skip
    return "\n".join(lines)
