"""The verdict rule (mlvgm.verdicts) on tables and dynamics made by hand: the paper's own Table 1a read as
the paper reads it, and the cases a short run produces, where the rule must say it cannot tell."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlvgm.verdicts import CRITIC_NEVER_LEARNT, ZERO_GRADIENT, advice, judge, nice_budget

ROOT = Path(__file__).resolve().parents[2]


def unit_rows(unit: str, samples: np.ndarray, infonce: np.ndarray, norm: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"unit": unit, "samples": samples, "infonce_ema": infonce, "norm": norm})


def table(rows: list[dict]) -> pd.DataFrame:
    defaults = {"reached": False, "stop": "budget", "samples": 10_000, "z_norm": math.sqrt(20)}
    return pd.DataFrame([{**defaults, **row} for row in rows])


def test_the_papers_table_1a_reads_as_the_paper_reads_it():
    """BigBiGAN, levels 1-6 (the paper's Table 1a): loss about 1 for levels 1-5, 0.14 for level 6; mu 0.67,
    3.63, 6.97, 13.0, 21.22 and 594.71. The paper: level 1 over-used, level 6 under-used."""
    mus = [0.67, 3.63, 6.97, 13.00, 21.22, 594.71]
    rows = [{"level": f"z{i + 1}", "mu": mu, "infonce": 1.0, "reached": True, "stop": "gamma"} for i, mu in
            enumerate(mus[:5])]  # fmt: skip
    rows.append({"level": "z6", "mu": mus[5], "infonce": 0.14 / 1.43, "samples": 500_000})
    samples = np.linspace(1_000, 500_000, 40)
    flat = unit_rows("z6", samples, np.full(40, 0.098), np.linspace(10, 594.71, 40))
    judged = judge(table(rows), flat, 1.0, batch_size=64)
    assert [v.verdict for v in judged] == ["over-used", "normal", "normal", "normal", "normal", "under-used"]
    assert "28 x the larger of the latent's typical norm and the largest mu of the other units" in judged[5].reason


def test_a_lone_unit_at_gamma_is_not_judged_over_used():
    """Against a unit whose walker never started (mu a lower bound, maybe 0, maybe anything), the median
    lies anywhere from 0.006 to infinity: nothing can be said of z1 yet; alone, nothing at all."""
    rows = [{"level": "z1", "mu": 0.01, "infonce": 1.0, "reached": True, "stop": "gamma"},
            {"level": "z2", "mu": 0.002, "infonce": 3.0, "stop": CRITIC_NEVER_LEARNT}]  # fmt: skip
    empty = pd.DataFrame(columns=["unit", "samples", "infonce_ema", "norm"])
    judged = judge(table(rows), empty, 1.0, batch_size=64)
    assert [v.verdict for v in judged] == ["undetermined", "undetermined"]
    assert "at least 0.006: the units still on the way" in judged[0].reason
    assert "critic never got below gamma" in judged[1].reason and not any(v.keep for v in judged)
    (alone,) = judge(table(rows[:1]), empty, 1.0, batch_size=64)
    assert alone.verdict == "undetermined" and "the only used unit" in alone.reason


def test_units_still_on_the_way_count_as_the_lower_bounds_they_are():
    """z1, z2 at gamma (2 and 9); z3-z5 stopped at the budget with mu >= 150, 400, 800 and still rising:
    the median of the five is at least 150 whatever z3-z5 end at, so z1 and z2 are over-used now and at any
    budget; z3-z5 stay undetermined but are kept for the audit (above 0.25 x 150)."""
    rising = np.concatenate([np.linspace(3.0, 0.5, 30), np.linspace(0.5, 0.7, 10)])
    samples = np.linspace(1_000, 256_000, 40)
    rows = [{"level": "z1", "mu": 2.0, "infonce": 1.0, "reached": True, "stop": "gamma"},
            {"level": "z2", "mu": 9.0, "infonce": 1.0, "reached": True, "stop": "gamma"}]  # fmt: skip
    dynamics = []
    for level, mu in (("z3", 150.0), ("z4", 400.0), ("z5", 800.0)):
        rows.append({"level": level, "mu": mu, "infonce": 0.7, "samples": 256_000})
        dynamics.append(unit_rows(level, samples, rising, np.linspace(1, mu, 40)))
    judged = judge(table(rows), pd.concat(dynamics), 1.0, batch_size=64)
    assert [v.verdict for v in judged] == ["over-used", "over-used", "undetermined", "undetermined", "undetermined"]
    assert "(at least 150)" in judged[0].reason
    assert [v.keep for v in judged] == [False, False, True, True, True]
    # z3 reaches gamma at 120 and z4, z5 at 500, 900: the median is 500, z3 is normal; z1, z2 still over-used
    done = table([{**row, "reached": True, "stop": "gamma", "infonce": 1.0} for row in rows])
    done["mu"] = [2.0, 9.0, 120.0, 500.0, 900.0]
    assert [v.verdict for v in judge(done, pd.concat(dynamics), 1.0, batch_size=64)] == [
        "over-used",
        "over-used",
        "normal",
        "normal",
        "normal",
    ]


def test_zero_gradient_is_under_used_whatever_the_budget():
    rows = [{"level": "z6", "mu": 0.002, "infonce": 1.3, "stop": ZERO_GRADIENT, "samples": 640}]
    (verdict,) = judge(table(rows), unit_rows("z6", np.array([64, 640]), np.array([4.8, 1.3]), np.full(2, 0.002)),
                       1.0, batch_size=64)  # fmt: skip
    assert verdict.verdict == "under-used" and verdict.suggested_samples is None


def test_a_rising_infonce_at_the_budget_is_undetermined_and_timed():
    """InfoNCE rising 0.5 -> 0.7 over the last quarter, linearly: gamma = 1 is (1 - 0.7) / slope samples
    away; the suggestion is 1.25 x (spent + that), rounded up to 2 figures and whole batches."""
    samples = np.linspace(1_000, 40_000, 40)
    infonce = np.concatenate([np.linspace(3.0, 0.5, 30), np.linspace(0.5, 0.7, 10)])
    rows = [{"level": "z4", "mu": 1.04, "infonce": 0.7, "samples": 40_000}]
    (verdict,) = judge(table(rows), unit_rows("z4", samples, infonce, np.linspace(0.01, 1.04, 40)), 1.0,
                       batch_size=64)  # fmt: skip
    slope = np.polyfit(samples[-10:], infonce[-10:], 1)[0]
    expected = nice_budget(1.25 * (40_000 + (1.0 - 0.7) / slope), 64)
    assert verdict.verdict == "undetermined" and verdict.mu_lower_bound and verdict.timed
    assert verdict.suggested_samples == expected and expected > 40_000
    assert "still rising" in verdict.reason


def test_a_growing_walker_with_a_critic_still_learning_is_undetermined_with_a_minimum():
    samples = np.linspace(1_000, 12_800, 40)
    rows = [{"level": "z5", "mu": 0.066, "infonce": 0.33, "samples": 12_800, "z_norm": 2.7}]
    dynamics = unit_rows("z5", samples, np.linspace(4.8, 0.33, 40), np.geomspace(0.002, 0.066, 40))
    (verdict,) = judge(table(rows), dynamics, 1.0, batch_size=64)
    assert verdict.verdict == "undetermined" and verdict.mu_lower_bound and not verdict.timed
    assert verdict.suggested_samples == nice_budget(4 * 12_800, 64)


def test_a_stalled_walker_is_undetermined_without_a_suggestion():
    samples = np.linspace(1_000, 12_800, 40)
    rows = [{"level": "z3", "mu": 1.0, "infonce": 0.4, "samples": 12_800}]
    (verdict,) = judge(table(rows), unit_rows("z3", samples, np.full(40, 0.4), np.full(40, 1.0)), 1.0, batch_size=64)
    assert verdict.verdict == "undetermined" and "stalled" in verdict.reason and verdict.suggested_samples is None


@pytest.mark.parametrize(("samples", "batch", "expected"), [(48_137, 64, 49_024), (84_000, 64, 84_032),
                                                            (999, 16, 1_008), (12, 64, 64)])  # fmt: skip
def test_nice_budget(samples, batch, expected):
    got = nice_budget(samples, batch)
    assert got == expected and got % batch == 0 and got >= samples


def test_the_committed_shapes_runs_read_as_before_and_the_short_one_says_what_it_lacks():
    """results/quantify: the full preset's verdicts (z1, z2 over-used; z3-z5 normal; z6 under-used); the
    half-budget run gives z1 and z2 the same verdicts, calls z4 and z5 undetermined, and says the budget
    that would get them to gamma."""

    def read(name):
        folder = ROOT / "results" / "quantify" / name
        t, d = pd.read_csv(folder / "table1.csv"), pd.read_csv(folder / "dynamics.csv")
        judged = judge(t, d, 1.0, batch_size=64)
        t["suggested_samples"] = [v.suggested_samples or 0 for v in judged]
        t["suggestion_timed"] = [v.timed for v in judged]
        return t, judged

    _, judged = read("shapes")
    assert [v.verdict for v in judged] == ["over-used", "over-used", "normal", "normal", "normal", "under-used"]
    assert [v.keep for v in judged] == [False, False, True, True, True, False]
    quick, judged = read("shapes-quick")
    assert [v.verdict for v in judged] == [
        "over-used",
        "over-used",
        "normal",
        "undetermined",
        "undetermined",
        "under-used",
    ]  # z1, z2 as with the full budget: the old rule said normal
    assert [v.keep for v in judged] == [False, False, True, True, True, False]
    assert all(v.mu_lower_bound and v.suggested_samples > 256_000 for v in judged[3:5])
    line = advice(quick, max_samples=256_000)
    assert line.startswith("3 of 6 units reached gamma") and "Try --max_samples" in line


def at_budget(table: pd.DataFrame, dynamics: pd.DataFrame, budget: int, gamma: float = 1.0):
    """The run `table`/`dynamics` as it would have stood with max_samples = budget: a unit that needed more
    stops there, its mu the mean perturbation norm logged by then (a lower bound), its critic armed if its
    smoothed InfoNCE had been below gamma."""
    rows, kept = [], []
    for _, row in table.iterrows():
        seen = dynamics[(dynamics["unit"] == row["level"]) & (dynamics["samples"] <= budget)]
        kept.append(seen)
        if row["samples"] <= budget or row["stop"] == ZERO_GRADIENT:
            rows.append(dict(row))
            continue
        armed = bool((seen["infonce_ema"] < gamma).any())
        rows.append(
            {
                **row,
                "reached": False,
                "samples": budget,
                "infonce": float(seen["infonce_ema"].iloc[-1]),
                "mu": float(seen["norm"].iloc[-1]),
                "stop": "budget" if armed else CRITIC_NEVER_LEARNT,
            }
        )
    return pd.DataFrame(rows), pd.concat(kept)


@pytest.mark.parametrize("name", ["shapes", "shapes-quick"])
def test_no_verdict_of_the_committed_runs_changes_as_their_budget_grows(name):
    """Replayed at 24 budgets from 6,400 samples to the run's own, every unit of the committed runs goes from
    undetermined to a verdict at most once and keeps it: never over-used <-> normal, as the old rule
    (compared with the units at gamma only) had z1 normal at 256k and over-used at 512k."""
    folder = ROOT / "results" / "quantify" / name
    table_, dynamics = pd.read_csv(folder / "table1.csv"), pd.read_csv(folder / "dynamics.csv")
    history = {level: [] for level in table_["level"]}
    for budget in np.geomspace(6_400, int(table_["samples"].max()), 24).astype(int):
        replayed, seen = at_budget(table_, dynamics, int(budget))
        for level, verdict in zip(replayed["level"], judge(replayed, seen, 1.0, batch_size=64), strict=True):
            history[level].append(verdict.verdict)
    for level, verdicts in history.items():
        given = [v for v in verdicts if v != "undetermined"]
        assert len(set(given)) <= 1, f"{level}: {verdicts}"
        if given:  # once given, never taken back
            assert "undetermined" not in verdicts[verdicts.index(given[0]) :], f"{level}: {verdicts}"
    assert history["z1 identity"][-6:] == ["over-used"] * 6  # from half the budget on (~100k samples)
