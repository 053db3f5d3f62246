"""bench.track and bench.ab: the A/B rounds' order, the verdicts' orientation, the exact counts, the default base,
the history's records (written, refused, backfilled, reported, plotted) and the one-line errors.

The probe is replaced by a fake that reads the figures from a file in the measured tree, so that a commit can be
made slower by writing a number; the real probe runs in .ci/run and in the calibration."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from bench import ab, history
from bench.gate_calibration import INJECTION, check_resumable, judge, summarise
from bench.track import ABConfig, ab_command, backfilled, cli, default_base, write_record
from bench.trend import has_points

ROOT = Path(__file__).resolve().parents[2]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def commit(repo: Path, speed: float, message: str) -> str:
    (repo / "speed.txt").write_text(str(speed))
    git(repo, "add", "speed.txt")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--allow-empty", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    return repo


class FakeWorker:
    """A probe process's stand-in: figures from its tree's speed.txt (images/s x speed, times / speed), with a small
    deterministic jitter; every command goes into the shared `calls` log."""

    def __init__(self, tree: Path, calls: list, ops: dict[str, int]) -> None:
        self.tree, self.calls, self.ops = Path(tree), calls, ops
        self.speed = float((self.tree / "speed.txt").read_text())
        calls.append((self.tree.name, "start"))

    def read(self) -> dict:
        return {"ready": True, "batch": 32, "steps_per_epoch": 3962, "torch": "t", "cs_path": "compiled"}

    def ask(self, command: str) -> dict:
        self.calls.append((self.tree.name, command))
        jitter = 1.0 + 0.01 * (-1) ** len(self.calls) * (len(self.calls) % 3)
        if command == "data":
            return {"rate": 9000 * self.speed * jitter}
        if command == "step":
            return {"seconds": 0.6 / self.speed * jitter}
        if command == "energy":
            return {"cs_co2_g_per_1k_images": 0.035 / self.speed * jitter, "co2_method": "fake"}
        assert command == "counts"
        return {"counts": {"cs_ops_outside_graphs": self.ops.get(self.tree.name, 1), "train_step_flops": 142}}

    def close(self) -> None:
        self.calls.append((self.tree.name, "close"))


def fake(calls: list | None = None, ops: dict[str, int] | None = None):
    calls = [] if calls is None else calls
    return lambda tree, log: FakeWorker(tree, calls, ops or {})


def test_rounds_interleave_the_arms_step_by_step_in_fresh_processes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for tree, speed in ((a, "1"), (b, "0.5")):
        tree.mkdir()
        (tree / "speed.txt").write_text(speed)
    calls: list = []
    results = ab.measure({"base": a, "head": b}, 2, tmp_path / "w", count_rounds=1, steps=3, start=fake(calls),
                         progress=lambda _: None)  # fmt: skip
    first = calls[: calls.index(("b", "close")) + 1]
    assert first[:2] == [("a", "start"), ("b", "start")]
    data = [c for c in first if c[1] == "data"]
    assert [c[0] for c in data] == ["a", "b", "b", "a"] * 3 + ["a", "b"]  # DATA_ROUNDS = 7, alternating
    assert [c[0] for c in first if c[1] == "step"] == ["a", "b", "b", "a", "a", "b"]
    assert [c[1] for c in first].count("counts") == 2 and [c[1] for c in calls].count("counts") == 2  # round 1 only
    assert [c[1] for c in calls].count("start") == 4 and [c[1] for c in calls].count("close") == 4
    second = calls[len(first) :]
    assert second[:2] == [("b", "start"), ("a", "start")]  # the other arm leads in the next round
    head = results["head"][0]
    # epoch time: the median step (0.6 / 0.5 s, jittered) times the steps of an epoch
    assert head["figures"]["cs_epoch_time_s"] == pytest.approx(sorted(head["step_times_s"])[1] * 3962)
    assert head["figures"]["cs_images_per_s"] == pytest.approx(4500, rel=0.03)
    assert (
        head["counts"] == {"cs_ops_outside_graphs": 1, "train_step_flops": 142} and results["head"][1]["counts"] == {}
    )


def _rounds(values: list[float], name: str, counts: dict | None = None) -> list[dict]:
    return [{"figures": {name: v}, "counts": counts or {}} for v in values]


def test_verdicts_are_oriented_by_each_figures_direction():
    base = _rounds([100.0, 101.0, 99.0, 100.5], "cs_images_per_s")
    slower = _rounds([80.0, 81.0, 79.5, 80.2], "cs_images_per_s")  # fewer images/s: worse
    d = ab.decide_figures(base, slower, threshold=0.10, alpha=0.05)["cs_images_per_s"]
    assert d.verdict == "regression"
    # the change is head/base - 1 in the bad direction: base/head - 1 for images/s, from the mean log ratio
    mean = sum(math.log(b / h) for b, h in zip([100, 101, 99, 100.5], [80, 81, 79.5, 80.2], strict=True)) / 4
    assert d.change == pytest.approx(math.expm1(mean))
    longer = _rounds([2400.0 * 1.2, 2410.0 * 1.2, 2395.0 * 1.2, 2402 * 1.2], "cs_epoch_time_s")
    base_t = _rounds([2400.0, 2410.0, 2395.0, 2402.0], "cs_epoch_time_s")
    assert ab.decide_figures(base_t, longer, threshold=0.10, alpha=0.05)["cs_epoch_time_s"].verdict == "regression"
    assert ab.decide_figures(longer, base_t, threshold=0.10, alpha=0.05)["cs_epoch_time_s"].verdict == "improvement"


def test_counts_are_compared_exactly():
    def arm(*ops: int) -> list[dict]:
        return [{"figures": {}, "counts": {"cs_ops_outside_graphs": o, "train_step_flops": 10}} for o in ops]

    assert ab.compare_counts(arm(1, 1), arm(2, 2))["cs_ops_outside_graphs"].verdict == "regression"
    assert ab.compare_counts(arm(2, 2), arm(1, 1))["cs_ops_outside_graphs"].verdict == "improvement"
    assert ab.compare_counts(arm(1, 1), arm(1, 1))["train_step_flops"].verdict == "no change"
    assert ab.compare_counts(arm(1, 1), arm(1, 3))["cs_ops_outside_graphs"].verdict == "undecided"
    assert ab.compare_counts(arm(1), [{"figures": {}, "counts": {}}]) == {}  # not measured: not compared


def test_ab_fails_a_slower_head_and_passes_an_unchanged_one(repo, tmp_path, capsys):
    base = commit(repo, 1.0, "base")
    commit(repo, 0.8, "head 25% slower")
    out = tmp_path / "ab.json"
    config = ABConfig(base=base, rounds=4, out=str(out), history=str(tmp_path / "none"))
    assert ab_command(config, repo=repo, start=fake()) == 1
    result = json.loads(out.read_text())
    assert {n for n, d in result["verdicts"]["figures"].items() if d["verdict"] == "regression"} == {
        "cs_images_per_s",
        "cs_epoch_time_s",
        "cs_co2_g_per_1k_images",
    }
    assert result["base"]["commit"] == base and not result["head"]["dirty"]
    assert "REGRESSION in" in capsys.readouterr().out
    assert len(git(repo, "worktree", "list").splitlines()) == 1  # the scratch worktree is gone

    commit(repo, 0.8, "same speed")
    config = ABConfig(rounds=4, out=str(out), history=str(tmp_path / "none"))  # default base: the parent
    assert ab_command(config, repo=repo, start=fake()) == 0
    assert "no regression" in capsys.readouterr().out


def test_ab_fails_a_structural_regression_even_when_times_are_equal(repo, tmp_path):
    base = commit(repo, 1.0, "base")
    commit(repo, 1.0, "head")
    config = ABConfig(base=base, rounds=2, out=str(tmp_path / "ab.json"), history=str(tmp_path / "none"))
    assert ab_command(config, repo=repo, start=fake(ops={"repo": 5})) == 1  # head (the checkout) has more ops


def _record(commit_sha: str, machine: str = "CPU, 2 logical CPUs", origin: str = "ab", **extra) -> dict:
    return {
        "schema": history.SCHEMA,
        "commit": commit_sha,
        "commit_date": "2026-12-06T10:00:00+00:00",
        "machine": machine,
        "origin": origin,
        "sources": {},
        **extra,
    }


def test_default_base_is_the_newest_recorded_ancestor_else_the_parent(repo, tmp_path):
    first = commit(repo, 1.0, "1")
    second = commit(repo, 1.0, "2")
    head = commit(repo, 1.0, "3")
    records = [history.Record(Path("x"), _record(first))]
    assert default_base(records, repo=repo)[0] == first
    records.append(history.Record(Path("y"), _record(second, origin="backfilled")))  # backfilled: not a base
    assert default_base(records, repo=repo)[0] == first
    records.append(history.Record(Path("z"), _record(head)))  # HEAD's own record: not a base of itself
    assert default_base(records, repo=repo)[0] == first
    assert default_base([], repo=repo) == (second, "HEAD's parent (no ancestor has a history record yet)")


def test_records_are_written_once_per_commit_and_machine(tmp_path, capsys):
    folder = tmp_path / "history"
    path = write_record(_record("a" * 40), folder, replace=False)
    assert history.read_history(folder)[0].path == path
    with pytest.raises(history.InputError, match="already records commit aaaaaaaaaa"):
        write_record(_record("a" * 40), folder, replace=False)
    write_record(_record("a" * 40, gated={"figures": {"cs_images_per_s": 5.0}}), folder, replace=True)
    (only,) = history.read_history(folder)
    assert only.data["gated"]["figures"]["cs_images_per_s"] == 5.0
    write_record(_record("a" * 40, machine="Other, 8 logical CPUs"), folder, replace=False)  # another machine: fine
    assert len(history.read_history(folder)) == 2


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "is not a JSON object"),
        (json.dumps({**_record("b" * 40), "origin": "guess"}), "origin 'guess'"),
        (json.dumps({k: v for k, v in _record("b" * 40).items() if k != "machine"}), "lacks 'machine'"),
    ],
)
def test_a_bad_history_record_is_one_line_and_status_2(tmp_path, capsys, content, message):
    folder = tmp_path / "history"
    folder.mkdir()
    (folder / "bad.json").write_text(content)
    assert cli(["report", "--history", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("python -m bench.track: error: history record")


def test_two_records_of_one_commit_and_machine_are_refused(tmp_path, capsys):
    folder = tmp_path / "history"
    folder.mkdir()
    for name in ("one.json", "two.json"):
        (folder / name).write_text(json.dumps(_record("c" * 40)))
    assert cli(["plot", "--history", str(folder), "--out", str(tmp_path / "t.png")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "two history records for commit cccccccccc" in line and "one.json and two.json" in line
    assert not (tmp_path / "t.png").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ab", "--base", "no-such-revision-xyz"], "base revision 'no-such-revision-xyz' does not exist"),
        (["ab", "--rounds", "1"], "--rounds must be at least 2"),
        (["frobnicate"], "give a command, one of ab, record, backfill, report, plot"),
        ([], "give a command"),
    ],
)
def test_bad_arguments_are_one_line_and_status_2(argv, message, capsys, tmp_path):
    assert cli([*argv, *(["--out", str(tmp_path / "ab.json")] if argv[:1] == ["ab"] else [])]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line


def _bench_json(sha: str, *, dirty: bool = False) -> dict:
    def b(name: str, info: dict) -> dict:
        return {"name": name, "stats": {"median": 1.0}, "extra_info": info}

    return {
        "machine_info": {"cpu": {"brand_raw": "CPU", "count": 2}},
        "commit_info": {"id": sha, "dirty": dirty},
        "benchmarks": [
            b("test_data_path[cs-32]", {"source": "cs", "batch": 32, "images_per_s": 7000.0}),
            b("test_data_path[cs-64]", {"source": "cs", "batch": 64, "images_per_s": 8000.0}),  # not the CI batch
            b(
                "test_epoch_time[cs-32]",
                {
                    "source": "cs",
                    "batch": 32,
                    "epoch_time_s": 2400.0,
                    "epoch_images": 126789,
                    "energy_kwh_per_epoch": 0.012,
                    "co2_kg_per_epoch": 0.0044,
                    "energy": {"method": "TDP estimate"},
                },
            ),
            b("test_cs_step[compiled-8]", {"member": "compiled-8", "path": "compiled", "images_per_s": 9400.0}),
        ],
    }


def test_sources_are_read_at_the_ci_batch_with_co2_per_1k_images():
    sources = history.sources_of(_bench_json("d" * 40))
    assert sources["cs"]["images_per_s"] == 7000.0
    assert sources["cs"]["epoch_time_s"] == 2400.0
    assert sources["cs"]["co2_g_per_epoch"] == pytest.approx(4.4)
    assert sources["cs"]["co2_g_per_1k_images"] == pytest.approx(4.4 / 126.789)
    assert sources["cs"]["co2_method"] == "TDP estimate"
    assert sources["cs-step compiled-8"] == {"images_per_s": 9400.0}
    assert history.bench_machine(_bench_json("d" * 40)) == "CPU, 2 logical CPUs"


def test_record_joins_the_ab_result_and_the_bench_run_of_one_clean_commit(repo, tmp_path, capsys):
    base = commit(repo, 1.0, "base")
    head = commit(repo, 1.0, "head")
    ab_json = tmp_path / "ab.json"
    assert (
        ab_command(
            ABConfig(base=base, rounds=2, out=str(ab_json), history=str(tmp_path / "h")), repo=repo, start=fake()
        )
        == 0
    )
    bench_json = tmp_path / "bench.json"
    bench_json.write_text(json.dumps(_bench_json(head)))
    folder = tmp_path / "history"
    assert cli(["record", "--ab", str(ab_json), "--bench", str(bench_json), "--history", str(folder)]) == 0
    (record,) = history.read_history(folder)
    assert (record.commit, record.origin, record.data["ab"]["base"]) == (head, "ab", base)
    assert record.data["gated"]["figures"]["cs_images_per_s"] == pytest.approx(9000, rel=0.05)
    assert record.data["gated"]["counts"] == {"cs_ops_outside_graphs": 1, "train_step_flops": 142}
    assert record.data["sources"]["cs"]["epoch_time_s"] == 2400.0
    capsys.readouterr()
    assert cli(["record", "--ab", str(ab_json), "--history", str(folder)]) == 2  # one record per commit+machine
    assert "pass --replace true" in capsys.readouterr().err

    bench_json.write_text(json.dumps(_bench_json("e" * 40)))
    assert cli(["record", "--ab", str(ab_json), "--bench", str(bench_json), "--history", str(tmp_path / "h2")]) == 2
    assert "measured eeeeeeeeee, not the A/B head" in capsys.readouterr().err
    result = json.loads(ab_json.read_text())
    result["head"]["dirty"] = True
    ab_json.write_text(json.dumps(result))
    assert cli(["record", "--ab", str(ab_json), "--history", str(tmp_path / "h2")]) == 2
    assert "uncommitted changes" in capsys.readouterr().err
    assert not (tmp_path / "h2").exists()  # nothing written on bad input


def test_backfill_reads_every_committed_benchmark_json_labelled_as_such():
    records = backfilled()
    sources_json = [r for r in records if any("results/bench/sources.json" in f for f in r["from"])]
    assert len(sources_json) >= 3  # the three committed versions of results/bench/sources.json
    for record in records:
        assert record["origin"] == "backfilled"
        history.check_record(record, Path("backfilled"))
    f811504 = next(r for r in records if r["commit"].startswith("f811504"))
    assert f811504["machine"] == "AMD EPYC, 2 logical CPUs"
    assert f811504["sources"]["cs"]["images_per_s"] == pytest.approx(7117.088, rel=1e-6)
    assert len({(r["commit"], r["machine"]) for r in records}) == len(records)


def test_report_and_plot_show_the_history(tmp_path, capsys):
    folder = tmp_path / "history"
    regression = {"figures": {"cs_epoch_time_s": {"verdict": "regression"}}, "counts": {}}
    write_record(
        _record("1" * 40, origin="backfilled", sources={"cs": {"images_per_s": 7000.0}}), folder, replace=False
    )
    write_record(
        _record(
            "2" * 40,
            gated={"figures": {"cs_images_per_s": 9000.0, "cs_epoch_time_s": 2400.0, "cs_co2_g_per_1k_images": 0.03}},
            ab={"base": "1" * 40, **regression},
        ),
        folder,
        replace=False,
    )
    assert cli(["report", "--history", str(folder)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 2222222222"))
    assert "9,000" in row and "cs_epoch_time_s" in row
    assert "| backfilled |" in out
    png = tmp_path / "trend.png"
    assert cli(["plot", "--history", str(folder), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a record of the CS step alone (backfilled from cs-step.json) has nothing the panels draw
    only_step = tmp_path / "only-step"
    write_record(_record("3" * 40, origin="backfilled", sources={"cs-step compiled-8": {"images_per_s": 9.0}}),
                 only_step, replace=False)  # fmt: skip
    assert not has_points(history.read_history(only_step)[0])
    assert has_points(history.read_history(folder)[0])
    capsys.readouterr()
    assert cli(["plot", "--history", str(only_step), "--out", str(tmp_path / "none.png")]) == 2
    assert "has a figure to plot" in capsys.readouterr().err
    assert not (tmp_path / "none.png").exists()


def test_the_injected_slowdown_spins_for_its_fraction_of_each_call():
    import time

    class Work:
        def step(self) -> str:
            time.sleep(0.02)
            return "done"

    namespace = {"Work": Work}
    exec(INJECTION.format(fraction=0.5, target="Work.step"), namespace)
    start = time.perf_counter()
    assert Work().step() == "done"
    assert time.perf_counter() - start >= 0.02 * 1.5  # a lower bound the spin guarantees, not a timing


def test_calibration_counts_a_block_as_an_alarm_when_any_figure_regresses():
    def arm(scale: float) -> list[dict]:
        return [
            {
                "figures": {
                    "cs_images_per_s": 100.0 / scale * (1 + 0.001 * i),
                    "cs_epoch_time_s": 10.0 * scale,
                    "cs_co2_g_per_1k_images": None,
                },
                "counts": {},
            }
            for i in range(4)
        ]

    results = {"head": arm(1.0), "copy": arm(1.0), "slow10": arm(1.2), "slow5": arm(1.0)}
    judged = judge(results, threshold=0.10, alpha=0.05)
    assert judged["copy"]["regressed"] == [] and judged["slow5"]["regressed"] == []
    assert set(judged["slow10"]["regressed"]) == {"cs_images_per_s", "cs_epoch_time_s"}
    worse = {a: {"cs_images_per_s": [0.0], "cs_epoch_time_s": [0.0], "cs_co2_g_per_1k_images": []} for a in judged}
    summary = summarise([{"judged": judged, "worse": worse, "seconds": 10.0}] * 20)
    assert summary["arms"]["slow10"]["gate_failed"] == 20 and summary["arms"]["copy"]["gate_failed"] == 0
    low, high = summary["arms"]["copy"]["gate_failed_interval_95"]
    assert low == 0.0 and high == pytest.approx(0.1684, abs=1e-4)  # Clopper-Pearson 0/20, from tables


def test_a_calibration_resumes_only_on_the_same_machine_and_measured_code(tmp_path):
    head = ab.git("rev-parse", "HEAD")
    root = ab.git("rev-list", "--max-parents=0", "HEAD").split()[0]  # bench/ and mlvgm/ differ from HEAD's
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    (blocks / "block-00.json").write_text(json.dumps({"machine": "M, 2 logical CPUs", "commit": head}))
    check_resumable(blocks, head, "M, 2 logical CPUs")
    with pytest.raises(history.InputError, match="was measured on M, 2 logical CPUs, this is N"):
        check_resumable(blocks, head, "N, 4 logical CPUs")
    (blocks / "block-01.json").write_text(json.dumps({"machine": "M, 2 logical CPUs", "commit": root}))
    with pytest.raises(history.InputError, match="differ from HEAD's: give a new --out"):
        check_resumable(blocks, head, "M, 2 logical CPUs")
