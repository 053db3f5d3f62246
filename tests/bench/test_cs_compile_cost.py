"""bench/cs_compile_cost.py's arithmetic (its timings run by hand, not in CI): medians over repeats, the compile's
cost against the eager start of the same cache state, and the steps that repay it."""

from __future__ import annotations

import pytest

from bench.cs_compile_cost import main, markdown, summarise
from mlvgm.errors import InputError


def run(first: float, steady: float) -> dict:
    return {"first_s": first, "steady_s": steady, "batch_size": 64, "mode": "eager", "threads": 2}


def test_the_compile_is_repaid_after_its_cost_over_the_saving_per_step():
    samples = {
        "eager": [run(14.0, 0.010), run(13.0, 0.009), run(15.0, 0.011)],  # medians 14 s, 10 ms
        "cold": [run(44.0, 0.004), run(43.0, 0.004), run(90.0, 0.004)],  # 44 s, 4 ms: the outlier is a median's
        "eager_cached": [run(3.0, 0.010)] * 3,
        "cached": [run(2.5, 0.004)] * 3,  # faster to start than the cached eager path: repaid at once
    }
    row = summarise("quickstart", samples)
    assert row["saving_per_step_s"] == pytest.approx(0.006)
    assert row["cold_compile_s"] == pytest.approx(30.0) and row["cold_repaid_after_steps"] == 5000
    assert row["cached_compile_s"] == pytest.approx(-0.5) and row["cached_repaid_after_steps"] == 0
    assert "| quickstart | 64 | 10.0 | 4.0 | 6.0 | 30.0 | 5,000 steps | -0.5 | 0 steps |" in markdown([row])


def test_a_compiled_step_that_is_not_faster_is_never_repaid():
    slower = {path: [run(10.0, 0.02)] for path in ("eager", "cold", "eager_cached", "cached")}
    row = summarise("shapes-synth", slower)
    assert row["cold_repaid_after_steps"] is None and "never" in markdown([row])


@pytest.mark.parametrize(("argv", "message"), [
    ([], "--out DIR is required"),
    (["--out", "x", "--presets", "nope"], "unknown preset 'nope'"),
    (["--out", "x", "--repeats", "0"], "--repeats must be > 0"),
])  # fmt: skip
def test_bad_input_is_one_line(argv, message):
    with pytest.raises(InputError, match=message):
        main(argv)
