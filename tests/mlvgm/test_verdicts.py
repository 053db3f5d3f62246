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
    assert "28 x the larger of the latent's typical norm and the largest mu at gamma" in judged[5].reason


def test_a_lone_unit_at_gamma_is_not_judged_over_used():
    rows = [{"level": "z1", "mu": 0.01, "infonce": 1.0, "reached": True, "stop": "gamma"},
            {"level": "z2", "mu": 0.002, "infonce": 3.0, "stop": CRITIC_NEVER_LEARNT}]  # fmt: skip
    judged = judge(table(rows), pd.DataFrame(columns=["unit", "samples", "infonce_ema", "norm"]), 1.0, batch_size=64)
    assert [v.verdict for v in judged] == ["undetermined", "undetermined"]
    assert "the only unit at gamma" in judged[0].reason and "critic never got below gamma" in judged[1].reason


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
    """results/quantify: the full preset's verdicts are unchanged (z1, z2 over-used; z3-z5 normal; z6
    under-used); the half-budget run no longer calls z4 and z5 anything but undetermined, and says the
    budget that would get them to gamma."""

    def read(name):
        folder = ROOT / "results" / "quantify" / name
        t, d = pd.read_csv(folder / "table1.csv"), pd.read_csv(folder / "dynamics.csv")
        judged = judge(t, d, 1.0, batch_size=64)
        t["suggested_samples"] = [v.suggested_samples or 0 for v in judged]
        t["suggestion_timed"] = [v.timed for v in judged]
        return t, judged

    _, judged = read("shapes")
    assert [v.verdict for v in judged] == ["over-used", "over-used", "normal", "normal", "normal", "under-used"]
    quick, judged = read("shapes-quick")
    assert [v.verdict for v in judged][3:5] == ["undetermined", "undetermined"]
    assert all(v.mu_lower_bound and v.suggested_samples > 256_000 for v in judged[3:5])
    line = advice(quick, max_samples=256_000)
    assert line.startswith("3 of 6 units reached gamma") and "Try --max_samples" in line
