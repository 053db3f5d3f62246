"""bench.compare: which same-run ratios it reads from a pytest-benchmark JSON, the direction-aware gate and
its tolerance edge, missing and new figures, exit statuses, and the baseline it writes. Fake JSONs only."""

from __future__ import annotations

import json
import math

import pytest

from bench.compare import Figure, cli, compare, extract, is_regression


def bench(group: str, name: str, median: float, *, extra: dict | None = None, params: dict | None = None) -> dict:
    """One pytest-benchmark entry: only the fields bench.compare reads."""
    stats = {"median": median, "min": median, "max": median, "rounds": 3}
    return {"group": group, "name": name, "params": params, "extra_info": extra or {}, "stats": stats}


def run(*benchmarks: dict, sha: str = "a" * 40) -> dict:
    return {
        "machine_info": {"node": "box", "cpu": {"brand_raw": "Test CPU", "count": 4}, "system": "Linux"},
        "commit_info": {"id": sha, "dirty": False, "branch": "main"},
        "datetime": "2026-01-01T00:00:00",
        "benchmarks": list(benchmarks),
    }


def sources(
    cs: float = 4000.0, folder: float = 1000.0, step_cs: float = 1.1, step_resident: float = 1.0, sha: str = "a" * 40
) -> dict:
    """A bench_sources run: data path at batch 64 (CS and the DataLoader), epoch time at batch 32."""
    return run(
        bench("sources-batch64", "test_data_path[cs-64]", 0.5, extra={"source": "cs", "images_per_s": cs}),
        bench("sources-batch64", "test_data_path[imagefolder-64]", 0.5,
              extra={"source": "imagefolder", "images_per_s": folder}),
        bench("epoch-time-batch32", "test_epoch_time[resident-32]", step_resident, extra={"source": "resident"}),
        bench("epoch-time-batch32", "test_epoch_time[cs-32]", step_cs, extra={"source": "cs"}),
        sha=sha,
    )  # fmt: skip


def test_extract_reads_each_familys_ratio_with_its_direction():
    data = run(
        bench("sources-batch64", "a", 0.1, extra={"source": "cs", "images_per_s": 3000.0}),
        bench("sources-batch64", "b", 0.1, extra={"source": "dali", "images_per_s": 1500.0}),
        bench("epoch-time-batch32", "c", 2.0, extra={"source": "resident"}),
        bench("epoch-time-batch32", "d", 2.5, extra={"source": "ffcv"}),
        bench("shapes-render-64px", "test_render_eager", 0.04),
        bench("shapes-render-64px", "test_render_compiled", 0.005),
        bench("anchor-latents", "test_latents_torch_generator", 0.001),
        bench("anchor-latents", "test_latents_philox_stream", 0.004),
        bench("bigbigan-forward-batch64-reduced", "x", 0.30, params={"variant": "eager"}),
        bench("bigbigan-forward-batch64-reduced", "y", 0.20, params={"variant": "eager-channels-last"}),
        bench("bigbigan-forward-batch64-reduced", "z", 0.05, params={"variant": "compiled"}),
        bench("infonce-fwd+bwd-N1024", "p", 0.08, extra={"impl": "paper"}),
        bench("infonce-fwd+bwd-N1024", "q", 0.02, extra={"impl": "compiled"}),
        bench("perturb-bigbigan-1024x6x20", "r", 0.012, extra={"impl": "paper"}),
        bench("perturb-bigbigan-1024x6x20", "s", 0.0004, extra={"impl": "compiled"}),
        bench("perturb-bigbigan-1024x6x20", "t", 0.0001, extra={"impl": "copy"}),
        bench("quantify-6-levels-shapes-32px", "u", 3.0, params={"joint": True}),
        bench("quantify-6-levels-shapes-32px", "v", 6.0, params={"joint": False}),
        bench("matmul-ceiling", "w", 0.01),
    )
    figures, untracked = extract(data)
    expected = {
        "sources-batch64/cs_vs_dali": (2.0, True),
        "epoch-time-batch32/ffcv_vs_resident": (1.25, False),
        "shapes-render-64px/compiled_speedup": (8.0, True),
        "anchor-latents/philox_cost": (4.0, False),
        "bigbigan-forward-batch64-reduced/compiled_vs_best_eager": (4.0, True),  # the faster eager variant
        "infonce-fwd+bwd-N1024/compiled_vs_paper": (4.0, True),
        "perturb-bigbigan-1024x6x20/compiled_vs_paper": (30.0, True),  # the copy ceiling is not an impl
        "quantify-6-levels-shapes-32px/joint_speedup": (2.0, True),
    }
    assert set(figures) == set(expected)
    for name, (value, higher) in expected.items():
        assert figures[name].value == pytest.approx(value), name
        assert figures[name].higher_is_better is higher, name
    assert untracked == ["matmul-ceiling"]
    assert "3,000 img/s" in figures["sources-batch64/cs_vs_dali"].detail  # absolute figures ride along


def test_extract_reads_the_cs_step_and_the_gpu_generator_variants():
    def step(member: str, median: float, rate: float, ops: int) -> dict:
        return bench("cs-step", member, median, extra={"member": member, "images_per_s": rate,
                                                       "ops_outside_graphs": ops})  # fmt: skip

    data = run(
        step("compiled-8", 0.001, 8000.0, 1), step("eager-8", 0.004, 2000.0, 203),
        step("compiled-256", 0.025, 10000.0, 1), step("eager-256", 0.030, 8500.0, 203),
        bench("stylegan2-forward-batch64-full", "a", 0.30, params={"variant": "eager"}),
        bench("stylegan2-forward-batch64-full", "b", 0.10, params={"variant": "compiled"}),
        bench("stylegan2-forward-batch64-full", "c", 0.06, params={"variant": "compiled-bf16"}),
    )  # fmt: skip
    figures, _ = extract(data)
    expected = {
        "cs-step/compiled_speedup_batch8": (4.0, True),
        "cs-step/compiled_speedup_batch256": (1.2, True),
        "cs-step/compiled_ops_batch8": (1.0, False),
        "cs-step/compiled_ops_batch256": (1.0, False),
        "cs-step/compiled_small_over_large_batch": (0.8, True),
        "stylegan2-forward-batch64-full/compiled_vs_best_eager": (3.0, True),
        "stylegan2-forward-batch64-full/compiled-bf16_vs_eager_fp32": (5.0, True),
    }
    assert set(figures) == set(expected)
    for name, (value, higher) in expected.items():
        assert figures[name].value == pytest.approx(value), name
        assert figures[name].higher_is_better is higher, name


def test_extract_needs_the_reference_member_and_skips_the_compiled_backward_row():
    data = run(
        bench("sources-batch64", "a", 0.1, extra={"source": "ffcv", "images_per_s": 3000.0}),  # no cs
        bench("epoch-time-batch32", "b", 2.0, extra={"source": "cs"}),  # no resident
        bench("infonce-backward-N256", "c", 0.002, extra={"impl": "paper"}),
        bench("infonce-backward-N256", "d", 0.0006, extra={"impl": "compiled"}),
        bench("infonce-backward-N256", "e", 0.001, extra={"impl": "torch"}),
        bench("infonce-forward-N16384", "f", 4.0, extra={"impl": "compiled"}),  # paper and torch skipped
    )
    figures, _ = extract(data)
    assert set(figures) == {"infonce-backward-N256/torch_vs_paper"}
    assert figures["infonce-backward-N256/torch_vs_paper"].value == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("baseline", "now", "higher", "regressed"),
    [
        (2.0, 1.4, True, True),  # higher is better: a 30% drop
        (2.0, 2.8, True, False),  # ... a rise is fine
        (2.0, 2.6, False, True),  # lower is better: a 30% rise
        (2.0, 1.2, False, False),  # ... a drop is fine
        (2.0, 1.5, True, False),  # exactly at the tolerance (0.25) is not a regression
        (2.0, 1.4999, True, True),  # just past it is
        (2.0, 2.5, False, False),
        (2.0, 2.5001, False, True),
        (2.0, math.nan, True, True),  # a broken measurement never passes
    ],
)
def test_gate_is_direction_aware_with_an_inclusive_tolerance(baseline, now, higher, regressed):
    assert is_regression(baseline, now, higher_is_better=higher, tolerance=0.25) is regressed


def test_compare_lists_missing_and_new_figures_without_failing_them():
    now = {"a": Figure(1.0, True, "x"), "new": Figure(3.0, False, "y")}
    baseline = {"a": {"value": 1.0, "higher_is_better": True}, "gone": {"value": 2.0, "higher_is_better": True}}
    rows = {r.name: r for r in compare(now, baseline, 0.3)}
    assert rows["a"].status == "ok" and rows["a"].change == pytest.approx(0.0)
    assert rows["gone"].status == "missing" and rows["gone"].now is None
    assert rows["new"].status == "new" and rows["new"].baseline is None


def write(path, data: dict) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def test_cli_writes_a_baseline_then_gates_against_it(tmp_path, capsys):
    base = tmp_path / "baseline.json"
    first = write(tmp_path / "first.json", sources(sha="b" * 40))
    assert cli([first, "--baseline", str(base), "--write_baseline"]) == 0
    record = json.loads(base.read_text())
    assert record["commit"]["id"] == "b" * 40
    assert record["machine"]["cpu"] == "Test CPU" and record["machine"]["cpu_count"] == 4
    assert record["figures"]["sources-batch64/cs_vs_imagefolder"] == {
        "value": 4.0, "higher_is_better": True, "detail": "cs 4,000 img/s, imagefolder 1,000 img/s"
    }  # fmt: skip
    assert record["figures"]["epoch-time-batch32/cs_vs_resident"]["higher_is_better"] is False
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind

    slower_cs = write(tmp_path / "slow.json", sources(cs=2000.0))  # CS vs DataLoader 4.0 -> 2.0
    assert cli([slower_cs, "--baseline", str(base)]) == 1
    assert "REGRESSED" in capsys.readouterr().out
    far_from_limit = write(tmp_path / "far.json", sources(step_cs=1.6))  # 1.1x the limit -> 1.6x
    assert cli([far_from_limit, "--baseline", str(base)]) == 1
    assert cli([far_from_limit, "--baseline", str(base), "--tolerance", "0.5"]) == 0
    faster_machine = write(tmp_path / "fast.json", sources(cs=8000.0, folder=2000.0, step_cs=0.55, step_resident=0.5))
    assert cli([faster_machine, "--baseline", str(base)]) == 0  # absolute figures changed, ratios did not


def test_cli_passes_when_a_loader_is_missing(tmp_path, capsys):
    base = tmp_path / "baseline.json"
    assert cli([write(tmp_path / "all.json", sources()), "--baseline", str(base), "--write_baseline"]) == 0
    without_folder = sources()
    without_folder["benchmarks"] = [b for b in without_folder["benchmarks"] if "imagefolder" not in b["name"]]
    assert cli([write(tmp_path / "some.json", without_folder), "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert "missing" in out and "1 missing, 0 regressed" in out


def test_cli_answers_bad_input_in_one_line_with_status_2(tmp_path, capsys):
    good = write(tmp_path / "run.json", sources())
    (tmp_path / "broken.json").write_text("{")
    cases = [
        ([good, "--baseline", str(tmp_path / "none.json")], "--write_baseline"),
        ([str(tmp_path / "broken.json"), "--baseline", str(tmp_path / "b.json")], "not JSON"),
        ([write(tmp_path / "other.json", {"x": 1}), "--baseline", str(tmp_path / "b.json")], "--benchmark-json"),
        ([good, "--baseline", write(tmp_path / "old.json", {"figures": {}})], "schema"),
    ]
    for argv, words in cases:
        assert cli(argv) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1
    assert cli([good, "--baseline", str(tmp_path / "b.json"), "--tolerance", "1.5"]) == 2
    assert "--tolerance is a fraction in [0, 1), got 1.5" in capsys.readouterr().err
