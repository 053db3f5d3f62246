"""bench.figure5: the rows and ratios it reads from a fake bench_sources JSON, the CSV and markdown it writes,
the figure (written whole), and one-line errors."""

from __future__ import annotations

import csv
import json

import pytest

from bench.figure5 import COLUMNS, cli_main, log_scale, rows

METHOD = "codecarbon 9.9 OfflineEmissionsTracker, tracking_mode=process; CPU estimated: ..."


def bench(group: str, median: float, extra: dict) -> dict:
    stats = {"median": median, "min": median * 0.9, "max": median * 1.1, "rounds": 4}
    return {"group": group, "name": f"test[{extra['source']}]", "params": None, "extra_info": extra, "stats": stats}


def data_path(source: str, batch: int, images_per_s: float, resolution: int = 64) -> dict:
    extra = {
        "source": source, "batch": batch, "resolution": resolution, "crop": 56, "preset": "no_color",
        "images_per_s": images_per_s, "threads": 2, "workers": 2, "device": "cpu", "device_name": "cpu",
    }  # fmt: skip
    return bench(f"sources-batch{batch}", 0.25, extra)


def epoch_time(source: str, batch: int, step: float, energy: dict | None = None) -> dict:
    steps_per_epoch = 126_789 // batch
    energy = energy or {"energy_kwh": 4e-6, "emissions_kg": 1.5e-6, "duration_s": 4 * step, "cpu_seconds": 8 * step,
                        "method": METHOD}  # fmt: skip
    extra = {
        "source": source, "batch": batch, "resolution": 64, "crop": 32, "preset": "no_color", "threads": 2,
        "workers": 2, "device": "cpu", "device_name": "cpu", "steps_timed": 4, "time_per_step_s": step,
        "epoch_images": 126_789, "steps_per_epoch": steps_per_epoch, "epoch_time_s": step * steps_per_epoch,
        "energy_kwh_per_epoch": None if energy["energy_kwh"] is None else energy["energy_kwh"] / 4 * steps_per_epoch,
        "co2_kg_per_epoch": None if energy["emissions_kg"] is None else energy["emissions_kg"] / 4 * steps_per_epoch,
        "energy": energy,
    }  # fmt: skip
    return bench(f"epoch-time-batch{batch}", step, extra)


def run(*benchmarks: dict) -> dict:
    return {
        "machine_info": {"node": "box", "cpu": {"brand_raw": "Test CPU", "count": 4}},
        "commit_info": {"id": "c0ffee" * 6 + "abcd", "dirty": True},
        "datetime": "2026-01-01T00:00:00",
        "benchmarks": [*benchmarks, {"group": "shapes-render-64px", "name": "other", "stats": {"median": 1.0}}],
    }


FULL = run(
    data_path("cs", 32, 4000.0), data_path("imagefolder", 32, 1000.0), data_path("ffcv", 64, 900.0),
    epoch_time("resident", 32, 1.0), epoch_time("cs", 32, 1.05), epoch_time("dali", 32, 1.5),
    epoch_time("ffcv", 32, 1.2, {"energy_kwh": None, "emissions_kg": None, "duration_s": None,
                                 "method": "not measured: codecarbon is not installed"}),
)  # fmt: skip


def test_rows_hold_the_ratios_within_one_batch_size_and_the_runs_provenance():
    table = {(r["benchmark"], r["source"], r["batch"]): r for r in rows(FULL)}
    assert len(table) == 7  # the other group is not a source benchmark
    assert table[("data_path", "cs", 32)]["cs_speedup"] == pytest.approx(1.0)
    assert table[("data_path", "imagefolder", 32)]["cs_speedup"] == pytest.approx(4.0)
    assert table[("data_path", "ffcv", 64)]["cs_speedup"] is None  # no CS at batch 64: no ratio made up
    assert table[("epoch_time", "cs", 32)]["ratio_to_limit"] == pytest.approx(1.05)
    assert table[("epoch_time", "dali", 32)]["ratio_to_limit"] == pytest.approx(1.5)
    cs = table[("epoch_time", "cs", 32)]
    assert cs["co2_rate_g_per_h"] == pytest.approx(1.5e-3 / (4 * 1.05) * 3600)
    assert cs["cpu_seconds_per_step"] == pytest.approx(2 * 1.05)
    assert cs["energy_method"] == METHOD
    assert cs["cpu"] == "Test CPU" and cs["git_sha"].startswith("c0ffee") and cs["git_dirty"] is True
    assert table[("epoch_time", "ffcv", 32)]["co2_rate_g_per_h"] is None


def test_cli_writes_csv_markdown_and_figure(tmp_path, capsys):
    bench_json = tmp_path / "run.json"
    bench_json.write_text(json.dumps(FULL))
    assert cli_main([str(bench_json), "--out", str(tmp_path)]) == 0
    with open(tmp_path / "sources.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert list(written[0]) == COLUMNS and len(written) == 7
    text = (tmp_path / "sources.md").read_text()
    assert "| Continuous Sampling | 4,000 (1.00x) |" in text
    assert "| PyTorch DataLoader | 1,000 (4.00x) | skipped |" in text  # a batch a source did not run
    assert "| DALI | 1.5 s (1.500x) |" in text
    assert METHOD in text and "not measured: codecarbon is not installed" in text
    png = (tmp_path / "figure5.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no temporary left behind
    assert "figure5.png" in capsys.readouterr().out


def test_a_data_path_only_run_gets_tables_but_no_figure(tmp_path, capsys):
    bench_json = tmp_path / "run.json"
    bench_json.write_text(json.dumps(run(data_path("cs", 32, 4000.0))))
    assert cli_main([str(bench_json), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "sources.md").exists() and not (tmp_path / "figure5.png").exists()
    assert "no figure5.png" in capsys.readouterr().out


def test_a_source_rendering_another_resolution_is_named_in_the_heading(tmp_path):
    bench_json = tmp_path / "run.json"
    bench_json.write_text(json.dumps(run(data_path("cs", 32, 4000.0), data_path("cs-bigbigan", 32, 5.0, 128))))
    assert cli_main([str(bench_json), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "sources.md").read_text()
    assert "(no_color, 64 px images; CS, BigBiGAN 128 px renders 128 px, 56 px views)" in text
    assert "| CS, BigBiGAN 128 px | 5 (800.00x) |" in text


def test_a_panel_spanning_more_than_ten_times_gets_a_log_axis():
    assert not log_scale([0.6, 0.7, 5.9, None])
    assert log_scale([0.6, 0.7, 15.1, None])  # BigBiGAN's step on a CPU beside the loaders'
    assert not log_scale([None, None]) and not log_scale([0.0, 3.0])


def test_bad_input_is_one_line_with_status_2(tmp_path, capsys):
    other, good = tmp_path / "other.json", tmp_path / "good.json"
    other.write_text(json.dumps(run()))
    good.write_text(json.dumps(FULL))
    for argv, words in [
        ([str(other), "--out", str(tmp_path)], "no benchmarks of bench/bench_sources.py"),
        ([str(tmp_path / "none.json"), "--out", str(tmp_path)], "does not exist"),
    ]:
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.json", "other.json"]  # nothing written
    assert cli_main([str(good), "--out", str(tmp_path / "new" / "folder")]) == 0  # created, with its parents
    assert (tmp_path / "new" / "folder" / "sources.csv").exists()


def test_several_jsons_of_one_split_run_read_as_one(tmp_path, capsys):
    first, second = tmp_path / "batch32.json", tmp_path / "batch64.json"
    first.write_text(json.dumps(run(data_path("cs", 32, 4000.0), data_path("ffcv", 32, 2000.0))))
    later = run(data_path("cs", 64, 3000.0), data_path("ffcv", 64, 6000.0))
    second.write_text(json.dumps({**later, "commit_info": {"id": "f" * 40, "dirty": False}}))
    assert cli_main([str(first), str(second), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "sources.md").read_text()
    assert "| FFCV | 2,000 (2.00x) | 6,000 (0.50x) |" in text  # both batch sizes, each ratio within its own file
    with open(tmp_path / "sources.csv", newline="") as f:
        assert {r["git_sha"] for r in csv.DictReader(f)} == {"c0ffee" * 6 + "abcd"}  # the first file's provenance
    (tmp_path / "list.json").write_text("[1, 2]")
    assert cli_main([str(first), str(tmp_path / "list.json"), "--out", str(tmp_path)]) == 2
    assert "list.json is not a pytest-benchmark JSON" in capsys.readouterr().err
