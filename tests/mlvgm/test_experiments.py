"""python -m mlvgm.experiments: the plan (jobs as data, keyed by config), the aggregation against literal
computations, and a smoke run of two tiny trainings that is killed, resumed and re-aggregated."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest

from mlvgm import experiments
from mlvgm.errors import InputError
from mlvgm.experiments import ExperimentsConfig
from mlvgm.generators import load_generator
from mlvgm.paper_jobs import Job, estimate, plan, table1
from mlvgm.paper_tables import (
    kl_agreement,
    kl_markdown,
    paired_differences,
    spearman,
    spearman_exact,
    summarise_paired,
    summarise_table2,
    t_critical,
    table1_markdown,
    table2_markdown,
)


def test_the_plan_of_table2_is_every_row_at_the_same_compute():
    jobs = plan(ExperimentsConfig(name="table2"))
    trains = [j for j in jobs if j.kind == "train"]
    # shapes: SimCLR every row, SimSiam and BYOL three; embedded: SimCLR's synth, random, ml-random; 3 seeds
    assert len(trains) == (6 + 3 + 3) * 3 + 3 * 3
    assert {j.kind for j in jobs} == {"train", "quantify", "export"}
    assert len({j.key for j in jobs}) == len(jobs)  # every job its own folder
    cs = [j for j in trains if j.config.get("source") != "imagefolder"]
    assert {j.config["epochs"] * j.config["epoch_images"] for j in cs} == {500 * 64}
    real = next(j for j in trains if j.name == "table2/simclr/real/s0")
    assert real.config["epochs"] * (8_000 // 64) == 500  # whole epochs of the finite set: 4 x 125 steps
    index = {j.name: i for i, j in enumerate(jobs)}
    for job in jobs:  # each job after the jobs it reads
        assert all(index[need.name] < index[job.name] for need in job.needs.values())


def test_a_job_key_follows_its_config_and_its_inputs():
    one = {j.name: j.key for j in plan(ExperimentsConfig(name="table2"))}
    again = {j.name: j.key for j in plan(ExperimentsConfig(name="table2"))}
    other = {j.name: j.key for j in plan(ExperimentsConfig(name="table2", quantify_samples=1000))}
    assert one == again
    assert one["table2/simclr/synth/s0"] == other["table2/simclr/synth/s0"]  # reads no quantification
    assert one["table2/simclr/ml-random/s0"] != other["table2/simclr/ml-random/s0"]  # reads one that changed


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["table9"], "unknown experiment 'table9'"), (["table2", "--rows", "synth,nope"], "--rows must be some of"),
     (["table2", "--real_images", "10"], "--real_images must be at least one batch"),
     (["table2", "--seeds", "-1"], "--seeds must be >= 0"),
     (["miniature", "--seeds", "1"], "--seeds 1 leaves the paired tests without a spread"),
     (["miniature", "--arms", "S,Q"], "--arms must be some of"),
     (["miniature", "--augment", "jitter"], "--augment must be one of"),
     (["figure5", "--figure5_json", "nope.json"], "--figure5_json nope.json is not a file")],
)  # fmt: skip
def test_bad_options_are_one_line(argv, message):
    with pytest.raises(InputError, match=None) as info:
        experiments.main(argv)
    assert message in str(info.value)


def fake_runs() -> pd.DataFrame:
    rows = []
    for method, row, seed, shape in [("simclr", "random", 0, 0.50), ("simclr", "random", 1, 0.60),
                                     ("simclr", "ml-random", 0, 0.70), ("simclr", "ml-random", 1, 0.65),
                                     ("simclr", "synth", 0, 0.40), ("simclr", "synth", 1, 0.42)]:  # fmt: skip
        for encoder, value in (("trained", shape), ("random init", 0.2 + seed / 100)):
            rows.append({"factor": "shape", "encoder": encoder, "linear_top1": value, "knn_top1": value / 2,
                         "method": method, "row": row, "seed": seed})  # fmt: skip
    return pd.DataFrame(rows)


def test_table2_statistics_match_a_literal_computation():
    summary = summarise_table2(fake_runs()).set_index(["method", "row", "factor"])
    ml = summary.loc[("simclr", "ml-random", "shape")]
    assert ml["linear_top1_mean"] == pytest.approx(statistics.mean([0.70, 0.65]))
    assert ml["linear_top1_std"] == pytest.approx(statistics.stdev([0.70, 0.65]))
    assert summary.loc[("simclr", "random init", "shape")]["linear_top1_mean"] == pytest.approx(0.205)
    paired = paired_differences(fake_runs())
    ml = paired[paired["comparison"] == "ml-random - random"]
    assert sorted(ml["linear_top1"].round(6)) == sorted([round(0.70 - 0.50, 6), round(0.65 - 0.60, 6)])
    assert set(paired["comparison"]) == {"ml-random - random", "random - random init", "ml-random - random init",
                                         "synth - random init"}  # fmt: skip
    init = paired[paired["comparison"] == "synth - random init"].sort_values("seed")
    assert list(init["linear_top1"].round(6)) == [round(0.40 - 0.20, 6), round(0.42 - 0.21, 6)]  # same seed's net


def test_t_critical_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 201):
        assert t_critical(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-3), df


def test_paired_intervals_match_a_literal_computation():
    stats = pytest.importorskip("scipy.stats")
    diffs = [0.10, 0.12, 0.07]  # clearly away from 0 ...
    noisy = [0.05, -0.04, 0.02]  # ... and not
    rows = [(c, s, v) for c, vs in (("a", diffs), ("b", noisy)) for s, v in enumerate(vs)]
    paired = pd.DataFrame(rows, columns=["comparison", "seed", "linear_top1"]).assign(method="simclr", factor="shape")
    out = summarise_paired(paired).set_index("comparison")
    for name, values in (("a", diffs), ("b", noisy)):
        low, high = stats.t.interval(0.95, len(values) - 1, loc=statistics.mean(values),
                                     scale=statistics.stdev(values) / len(values) ** 0.5)  # fmt: skip
        assert out.loc[name, "mean"] == pytest.approx(statistics.mean(values))
        assert out.loc[name, "ci95"] == pytest.approx((high - low) / 2, rel=1e-3)
        assert out.loc[name, "resolved"] == (low > 0 or high < 0)
    assert out.loc["a", "resolved"] and not out.loc["b", "resolved"]


def test_table2_markdown_bolds_only_differences_outside_the_noise():
    text = table2_markdown(summarise_table2(fake_runs()), paired_differences(fake_runs()))
    assert "kNN" in text and "| simclr | random init |" in text
    ml_line = next(line for line in text.splitlines() if "| ml-random - random |" in line)
    assert "**" not in ml_line  # +0.20 and +0.05 over 2 seeds: t(1) = 12.7 makes the interval hold 0
    init_line = next(line for line in text.splitlines() if "| synth - random init |" in line)
    assert "**+0.205 +- " in init_line  # 0.20 and 0.21: a tiny spread, well away from 0


def test_the_eta_prices_a_job_by_its_siblings_then_its_kind():
    todo = [Job("train", "table2/simclr/real/s1", {}), Job("train", "table2/byol/synth/s0", {}),
            Job("quantify", "table1/quantify/s0", {})]  # fmt: skip
    timed = {"table2/simclr/real/s0": ("train", 600.0), "table2/simclr/synth/s0": ("train", 200.0),
             "table2/simclr/synth/s1": ("train", 220.0), "table2/real-data": ("export", 5.0)}  # fmt: skip
    # real/s1 as real/s0 (600); byol/synth as the mean of every train (340); quantify: nothing timed yet (0)
    assert estimate(todo, timed) == pytest.approx(600 + (600 + 200 + 220) / 3)


def test_table1_statistics_match_a_literal_computation(tmp_path):
    jobs = [j for j in plan(ExperimentsConfig(name="table1", seeds=3, generators=("shapes",)))]
    for job, (mu, verdict) in zip(jobs, [(1.0, "normal"), (2.0, "normal"), (4.0, "under-used")], strict=True):
        job.folder(tmp_path).mkdir(parents=True)
        bound = verdict == "under-used"
        pd.DataFrame(
            {"level": ["z1"], "mu": [mu], "sigma": [0.1], "verdict": [verdict], "mu_lower_bound": [bound]}
        ).to_csv(job.folder(tmp_path) / "table1.csv", index=False)
        (job.folder(tmp_path) / "quantify.json").write_text("{}")
    row = table1(jobs, tmp_path).iloc[0]
    assert row["mu_mean"] == pytest.approx(statistics.mean([1, 2, 4]))
    assert row["mu_std"] == pytest.approx(statistics.stdev([1, 2, 4]))
    assert row["verdict"] == "normal" and row["agreement"] == pytest.approx(2 / 3)
    assert row["mu_lower_bounds"] == 1 and "| z1 | 3 | >= 2.33 +- 1.5 |" in table1_markdown(table1(jobs, tmp_path))


def test_smoke_two_runs_killed_resumed_and_reaggregated(tmp_path, monkeypatch, capsys):
    """Two 4-step runs; the second is killed after its checkpoint at step 2. The rerun trains only the
    second, from step 2; the third invocation trains nothing and only re-aggregates."""
    from mlvgm import training as train_module

    real_train = train_module.train
    calls = []

    def killed_at_2(config, run_dir, **kwargs):
        calls.append((run_dir.name, kwargs.get("resume")))
        if "random" in run_dir.name and len(calls) == 2:
            real_train(config, run_dir, stop_at=2, **kwargs)
            raise KeyboardInterrupt
        return real_train(config, run_dir, **kwargs)

    monkeypatch.setattr(train_module, "train", killed_at_2)
    argv = ["table2", "--seeds", "1", "--budget", "4", "--rows", "synth,random", "--methods", "simclr", "--generators",
            "shapes",
            "--eval_train", "64", "--eval_test", "32", "--out", str(tmp_path / "out"), "--runs",
            str(tmp_path / "runs"), "--device", "cpu"]  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        experiments.main(argv)
    synth, random = sorted(p for p in (tmp_path / "runs").iterdir() if p.name.startswith("table2"))[::-1]
    assert (synth / "probes.csv").exists() and not (random / "probes.csv").exists()
    assert json.loads((random / "checkpoint.json").read_text())["step"] == 2

    calls.clear()
    result = experiments.main(argv)
    assert calls == [(random.name, True)] and result["ran"] == 1
    assert json.loads((random / "summary.json").read_text())["steps_this_session"] == 2
    table = (tmp_path / "out" / "table2.md").read_text()
    assert "| simclr | synth |" in table and "| simclr | random |" in table and "random init" in table

    calls.clear()
    (tmp_path / "out" / "table2.md").unlink()
    result = experiments.main(argv)
    assert calls == [] and result["ran"] == 0 and (tmp_path / "out" / "table2.md").read_text() == table
    assert "0 to run" in capsys.readouterr().out

    # a run probed before the probe chose its weight decay is probed again, its training kept
    old = pd.read_csv(synth / "probes.csv").drop(columns="linear_weight_decay")
    old.to_csv(synth / "probes.csv", index=False)
    result = experiments.main(argv)
    assert calls == [] and result["ran"] == 1
    assert "linear_weight_decay" in pd.read_csv(synth / "probes.csv").columns


def test_figure5_tabulates_a_given_benchmark_and_names_it(tmp_path):
    """--figure5_json: bench/figure5.py's tables and figure from an earlier bench_sources run (here the committed
    one), with its commit and date in README.md; nothing is measured."""
    committed = Path(__file__).resolve().parents[2] / "results" / "bench" / "sources.json"
    out = tmp_path / "out"
    result = experiments.main(["figure5", "--figure5_json", str(committed), "--out", str(out), "--runs",
                               str(tmp_path / "runs")])  # fmt: skip
    assert result["ran"] == 0 and not (tmp_path / "runs" / "figure5").exists()
    assert {"sources.md", "sources.csv", "figure5.png", "source.json"} <= {p.name for p in (out / "figure5").iterdir()}
    commit = json.loads(committed.read_text())["commit_info"]["id"]
    readme = (out / "README.md").read_text()
    assert "## Figure 5" in readme and str(committed) in readme and commit[:10] in readme


def test_table2_plot_has_a_panel_per_factor(tmp_path):
    from PIL import Image

    from mlvgm.paper_tables import plot_table2

    runs = pd.concat([fake_runs(), fake_runs().assign(factor="color")])
    plot_table2(summarise_table2(runs), tmp_path / "t2.png", runs, {"shape": 1 / 12, "color": 1 / 8})
    with Image.open(tmp_path / "t2.png") as image:
        width, height = image.size
    assert width > height  # two panels side by side


# --- the embedded VAE ---------------------------------------------------------------------------------


def test_the_embedded_vae_gets_table1_and_simclr_synth_random_ml_random():
    jobs = {j.name: j for j in plan(ExperimentsConfig(name="all", generators=("embedded",)))}
    assert {n for n in jobs if n.startswith("embedded/table1/")} == {f"embedded/table1/quantify/s{s}" for s in range(3)}
    trains = sorted(n for n in jobs if "/table2/" in n)
    assert trains == sorted(f"embedded/table2/simclr/{row}/s{s}" for row in ("synth", "random", "ml-random")
                            for s in range(3))  # fmt: skip
    assert all(j.config["generator"] == "embedded" for j in jobs.values())
    levels = len(load_generator("embedded").level_dims)
    assert jobs["embedded/table2/simclr/random/s0"].config["view_levels"] == tuple(str(i + 1) for i in range(levels))
    assert jobs["embedded/table2/simclr/ml-random/s1"].needs["views"] is jobs["embedded/table1/quantify/s1"]
    shapes = {j.name: j.key for j in plan(ExperimentsConfig(name="all", generators=("shapes",)))}
    both = {j.name: j.key for j in plan(ExperimentsConfig(name="all"))}
    assert {n: k for n, k in both.items() if not n.startswith("embedded/")} == shapes  # the shapes runs stay valid


def test_kl_agreement_matches_a_literal_reading():
    from scipy.stats import spearmanr

    t1 = pd.DataFrame({"level": ["z1", "z2", "z3", "z4", "z5"], "mu_mean": [1.0, 3.0, 2.0, 9.0, 0.01],
                       "mu_std": [0.1] * 5, "verdict": ["normal", "normal", "normal", "normal", "under-used"],
                       "verdicts": ["x"] * 5})  # fmt: skip
    kl = [10.0, 40.0, 300.0, 600.0, 0.5]  # z5 tells the decoder half a nat per image: collapsed
    rows, summary = kl_agreement(t1, kl)
    assert list(rows["collapsed"]) == [False, False, False, False, True]
    assert rows["kl_share"].tolist() == pytest.approx([k / sum(kl) for k in kl])
    assert summary["collapsed_by_kl"] == ["z5"] and summary["under_used_by_quantification"] == ["z5"]
    assert summary["unused_agree"] and not summary["mu_increasing"]  # z3 < z2
    assert summary["rho_mu_vs_level"] == pytest.approx(spearmanr([0, 1, 2, 3], [1.0, 3.0, 2.0, 9.0])[0])
    assert summary["rho_mu_vs_kl"] == pytest.approx(spearmanr(kl[:4], [1.0, 3.0, 2.0, 9.0])[0])
    text = kl_markdown(rows, summary)
    assert "agree: collapsed by KL z5; under-used by quantification z5" in text and "does not grow" in text
    t1.loc[4, "verdict"] = "normal"
    assert not kl_agreement(t1, kl)[1]["unused_agree"]


@pytest.mark.parametrize(("a", "b"), [([1.0, 2.0, 3.0, 4.0, 5.0], [5.0, 4.0, 3.0, 2.0, 1.0]),
                                      ([0.3, 1.2, 0.7, 2.5], [4.0, 1.0, 3.0, 0.5]),
                                      ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2.0, 1.0, 4.0, 3.0, 6.0, 5.0])])  # fmt: skip
def test_spearman_exact_matches_scipys_exact_permutation_test(a, b):
    from scipy.stats import permutation_test, spearmanr

    rho, p = spearman_exact(a, b)
    reference = permutation_test((a, b), lambda x, y: spearmanr(x, y)[0], permutation_type="pairings",
                                 alternative="less", n_resamples=math.inf)  # fmt: skip
    assert rho == pytest.approx(reference.statistic) and p == pytest.approx(reference.pvalue)


def test_kl_agreement_adds_the_ordering_test_on_mu_per_coordinate_against_gain():
    t1 = pd.DataFrame({"level": ["z1", "z2", "z3", "z4"], "mu_mean": [2.0, 8.0, 1.0, 40.0], "mu_std": [0.1] * 4,
                       "verdict": ["normal"] * 3 + ["under-used"], "verdicts": ["x"] * 4})  # fmt: skip
    rows, summary = kl_agreement(t1, [10.0, 20.0, 30.0, 0.1], gains=[3.0, 1.0, 2.0, 0.0], dims=[4, 16, 1, 64])
    assert rows["mu_per_coordinate"].tolist() == pytest.approx([1.0, 2.0, 1.0, 5.0])
    # used levels z1..z3: mu per coordinate (1, 2, 1) against gains (3, 1, 2)
    assert summary["rho_mu_per_coordinate_vs_gain"] == pytest.approx(spearman([1.0, 2.0, 1.0], [3.0, 1.0, 2.0]))
    assert "The ordering test" in kl_markdown(rows, summary)
    with pytest.raises(ValueError, match="2 to 8 pairs"):
        spearman_exact([1.0] * 9, [2.0] * 9)
