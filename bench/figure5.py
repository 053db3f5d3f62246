"""The paper's Figure 5 from a run of bench/bench_sources.py: every figure as CSV, markdown tables, a plot.

    pytest bench/bench_sources.py --benchmark-json results/bench/sources.json
    python -m bench.figure5 results/bench/sources.json --out results/bench/

writes into --out (each file atomically):

    sources.csv    one row per benchmark: source, batch, medians, images/s and their ratio to CS, time per
                   step and its ratio to the resident limit, per-epoch time, energy and CO2 with codecarbon's
                   method, threads, device, and the run's hardware and git SHA
    sources.md     the tables: source x batch images/s (CS / source), step time (/ the limit), and energy and
                   CO2 per epoch
    figure5.png    time per epoch, CO2 rate and total CO2 per epoch, per source and batch size

Per-epoch figures are the timed steps extrapolated to an epoch of `epoch_images` (ImageNet-100's 126,789,
as the paper's epochs): time per step x steps per epoch, energy and CO2 of the timed steps scaled the same
way. Ratios are within the run (DESIGN.md, section 5); absolute figures are this machine's.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.compare import check_benchmark_json, commit_summary, machine_summary, read_json
from mlvgm.cli import run
from mlvgm.config import option, parse_config
from mlvgm.errors import InputError
from mlvgm.io import atomic_write_text, check_creatable, make_output_dir
from mlvgm.plots import save_png

DATA_PREFIX, EPOCH_PREFIX = "sources-batch", "epoch-time-batch"
# table and legend order
ORDER = ("resident", "cs", "cs-bigbigan", "cs-stylegan2", "cs-paper", "imagefolder", "dali", "ffcv")
LABELS = {
    "resident": "resident batch (limit)",
    "cs": "Continuous Sampling",
    "cs-bigbigan": "CS, BigBiGAN 128 px",
    "cs-stylegan2": "CS, StyleGAN2 256 px",
    "cs-paper": "CS, paper's code path",
    "imagefolder": "PyTorch DataLoader",
    "dali": "DALI",
    "ffcv": "FFCV",
}
CS_TARGET = 1.10  # the issue's target: CS at most 10% slower than the resident limit
# A panel whose bars span more than this factor gets a log axis (BigBiGAN's CS on a CPU: 25x the limit)
LOG_SPREAD = 10.0
COLUMNS = [
    "benchmark", "source", "batch", "resolution", "crop", "preset", "median_s", "min_s", "max_s", "rounds",
    "images_per_s", "cs_speedup", "time_per_step_s", "ratio_to_limit", "steps_per_epoch", "epoch_images",
    "epoch_time_s", "energy_kwh_per_epoch", "co2_kg_per_epoch", "co2_rate_g_per_h", "cpu_seconds_per_step",
    "energy_method", "threads", "workers", "device", "device_name", "cpu", "cpu_count", "git_sha", "git_dirty",
    "run_datetime",
]  # fmt: skip


def _order(source: str) -> tuple[int, str]:
    return (ORDER.index(source) if source in ORDER else len(ORDER), source)


def rows(data: dict) -> list[dict]:
    """One dict per data-path or epoch-time benchmark of a pytest-benchmark JSON, with the ratios filled in."""
    machine, commit = data.get("machine_info") or {}, data.get("commit_info") or {}
    run = {
        "cpu": (machine.get("cpu") or {}).get("brand_raw") or machine.get("processor"),
        "cpu_count": (machine.get("cpu") or {}).get("count"),
        "git_sha": commit.get("id"),
        "git_dirty": commit.get("dirty"),
        "run_datetime": data.get("datetime"),
    }
    out = []
    for b in data.get("benchmarks", []):
        group, info, stats = b.get("group") or "", b.get("extra_info") or {}, b["stats"]
        if group.startswith(DATA_PREFIX):
            kind = "data_path"
        elif group.startswith(EPOCH_PREFIX):
            kind = "epoch_time"
        else:
            continue
        row = dict.fromkeys(COLUMNS)
        row.update(run)
        row.update({k: info.get(k) for k in COLUMNS if k in info})
        row.update(benchmark=kind, median_s=stats["median"], min_s=stats.get("min"), max_s=stats.get("max"),
                   rounds=stats.get("rounds"))  # fmt: skip
        if kind == "epoch_time":
            energy = info.get("energy") or {}
            steps = info.get("steps_timed")
            row["energy_method"] = energy.get("method")
            if energy.get("emissions_kg") is not None and energy.get("duration_s"):
                row["co2_rate_g_per_h"] = 1000.0 * energy["emissions_kg"] / energy["duration_s"] * 3600.0
            if energy.get("cpu_seconds") is not None and steps:
                row["cpu_seconds_per_step"] = energy["cpu_seconds"] / steps
        out.append(row)
    _fill_ratios(out)
    return sorted(out, key=lambda r: (r["benchmark"], r["batch"] or 0, _order(r["source"] or "")))


def _fill_ratios(table: list[dict]) -> None:
    """CS images/s / each source's, and each source's step time / the resident limit's, at the same batch."""
    cs = {r["batch"]: r["images_per_s"] for r in table if r["benchmark"] == "data_path" and r["source"] == "cs"}
    limit = {
        r["batch"]: r["time_per_step_s"] for r in table if r["benchmark"] == "epoch_time" and r["source"] == "resident"
    }
    for r in table:
        if r["benchmark"] == "data_path" and r["batch"] in cs and r["images_per_s"]:
            r["cs_speedup"] = cs[r["batch"]] / r["images_per_s"]
        if r["benchmark"] == "epoch_time" and r["batch"] in limit and r["time_per_step_s"]:
            r["ratio_to_limit"] = r["time_per_step_s"] / limit[r["batch"]]


def to_csv(table: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.3g} s"


def _number(x: float | None, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _grid(table: list[dict], kind: str, cell) -> list[str]:
    """A markdown table: one row per source, one column per batch size, cells from cell(row)."""
    chosen = [r for r in table if r["benchmark"] == kind]
    batches = sorted({r["batch"] for r in chosen})
    sources = sorted({r["source"] for r in chosen}, key=_order)
    by_key = {(r["source"], r["batch"]): r for r in chosen}
    lines = ["| source | " + " | ".join(f"batch {b}" for b in batches) + " |", "|---" * (len(batches) + 1) + "|"]
    for s in sources:
        cells = [cell(by_key[(s, b)]) if (s, b) in by_key else "skipped" for b in batches]
        lines.append(f"| {LABELS.get(s, s)} | " + " | ".join(cells) + " |")
    return lines


def _data_cell(r: dict) -> str:
    return f"{_number(r['images_per_s'], ',.0f')} ({_number(r['cs_speedup'], '.2f')}x)"


def _step_cell(r: dict) -> str:
    return f"{_number(r['time_per_step_s'], '.3g')} s ({_number(r['ratio_to_limit'], '.3f')}x)"


def markdown(table: list[dict], data: dict) -> str:
    """sources.md: the run's provenance, then the data-path, step-time and per-epoch energy tables."""
    first = table[0] if table else {}
    device = first.get("device_name") or first.get("device") or "?"
    lines = [
        "# Continuous Sampling against data loaders (the paper's Figure 5)",
        "",
        f"{machine_summary(data)}; device {device}; {first.get('threads', '?')} torch threads, "
        f"{first.get('workers', '?')} loader workers; {commit_summary(data)}; run {str(data.get('datetime'))[:19]}.",
        "Medians over each benchmark's rounds; every ratio is within this run.",
        "",
    ]
    data_rows = [r for r in table if r["benchmark"] == "data_path"]
    if data_rows:
        r0 = data_rows[0]
        others = sorted({(LABELS.get(r["source"], r["source"]), r["resolution"]) for r in data_rows
                         if r["resolution"] != r0["resolution"]})  # fmt: skip
        renders = "".join(f"; {label} renders {res} px" for label, res in others)
        lines += [
            f"## Data path: images/s as two views ({r0['preset']}, {r0['resolution']} px images{renders}, "
            f"{r0['crop']} px views)",
            "",
            "Cells: images/s (CS images/s / this source's: above 1, CS is faster).",
            "",
            *_grid(table, "data_path", _data_cell),
            "",
        ]
    epoch_rows = [r for r in table if r["benchmark"] == "epoch_time"]
    if epoch_rows:
        r0 = epoch_rows[0]
        lines += [
            f"## Training step fed by each source (SimCLR, small-stem ResNet-18, {r0['crop']} px views)",
            "",
            "Cells: median time per step (that / the resident batch's: the distance to the limit). "
            f"Target for Continuous Sampling: at most {CS_TARGET:.2f}x.",
            "",
            *_grid(table, "epoch_time", _step_cell),
            "",
            f"## Per epoch of {r0['epoch_images']:,} images (extrapolated from the timed steps)",
            "",
            "| source | batch | steps | epoch time | energy (kWh) | CO2 (g CO2eq) | CO2 rate (g/h) | CPU s per step |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(epoch_rows, key=lambda r: (r["batch"], _order(r["source"]))):
            co2 = None if r["co2_kg_per_epoch"] is None else 1000.0 * r["co2_kg_per_epoch"]
            lines.append(
                f"| {LABELS.get(r['source'], r['source'])} | {r['batch']} | {r['steps_per_epoch']:,} | "
                f"{_duration(r['epoch_time_s'])} | {_number(r['energy_kwh_per_epoch'], '.3g')} | "
                f"{_number(co2, '.3g')} | {_number(r['co2_rate_g_per_h'], '.3g')} | "
                f"{_number(r['cpu_seconds_per_step'], '.3g')} |"
            )
        methods = sorted({r["energy_method"] for r in epoch_rows if r["energy_method"]})
        lines += ["", "Energy and CO2: " + (" / ".join(methods) if methods else "not recorded"), ""]
    return "\n".join(lines)


def plot(table: list[dict], path: Path) -> bool:
    """figure5.png: grouped bars per batch size, one bar per source, for the three per-epoch figures.

    Returns False, writing nothing, when the table has no epoch-time rows (a run of the data path alone).
    """
    chosen = [r for r in table if r["benchmark"] == "epoch_time"]
    if not chosen:
        return False
    from matplotlib.figure import Figure

    batches = sorted({r["batch"] for r in chosen})
    sources = sorted({r["source"] for r in chosen}, key=_order)
    by_key = {(r["source"], r["batch"]): r for r in chosen}
    panels = [
        ("time per epoch (h)", lambda r: None if r["epoch_time_s"] is None else r["epoch_time_s"] / 3600.0),
        ("CO2 rate (g CO2eq / h)", lambda r: r["co2_rate_g_per_h"]),
        ("CO2 per epoch (g CO2eq)", lambda r: None if r["co2_kg_per_epoch"] is None else 1000 * r["co2_kg_per_epoch"]),
    ]
    width = 0.8 / len(sources)
    fig = Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    for ax, (title, value) in zip(axes, panels, strict=True):
        if log_scale([value(r) for r in chosen]):
            ax.set_yscale("log")
            title += ", log scale"
        for i, s in enumerate(sources):
            xs, ys = [], []
            for j, b in enumerate(batches):
                v = value(by_key[(s, b)]) if (s, b) in by_key else None
                if v is not None:
                    xs.append(j - 0.4 + width * (i + 0.5))
                    ys.append(v)
            limit = s == "resident"  # drawn hollow and hatched: the bound, not a competitor
            ax.bar(xs, ys, width, label=LABELS.get(s, s), hatch="//" if limit else None,
                   color="none" if limit else None, edgecolor="black" if limit else None)  # fmt: skip
        ax.set_xticks(range(len(batches)), [str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_title(title)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(sources), fontsize=9, frameon=False)  # clear of the bars
    first = chosen[0]
    fig.suptitle(
        f"Figure 5 on {first['device_name'] or first['device']} ({first['cpu']}): epochs of "
        f"{first['epoch_images']:,} images, extrapolated; git {str(first['git_sha'])[:10]}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_png(fig, path, dpi=120)
    return True


def log_scale(values: Sequence[float | None]) -> bool:
    """Whether a panel's positive values span more than LOG_SPREAD: on a linear axis the small bars would vanish."""
    positive = [v for v in values if v is not None and v > 0]
    return bool(positive) and max(positive) > LOG_SPREAD * min(positive)


def merged(files: list, names: Sequence[str]) -> dict:
    """One pytest-benchmark record from several: the first's machine, commit and date, every benchmark."""
    for data, name in zip(files, names, strict=True):
        check_benchmark_json(data, name)
    return {**files[0], "benchmarks": [b for data in files for b in data.get("benchmarks", [])]}


@dataclass(frozen=True, kw_only=True)
class Figure5Config:
    bench_json: tuple[str, ...] = option(
        help="pytest-benchmark JSON of bench/bench_sources.py; several (one run split by MLVGM_BENCH_BATCHES, "
        "say) are read as one, with the first file's machine and commit",
        positional=True,
    )
    out: str = option("runs/bench", "folder for sources.csv, sources.md, figure5.png (created if missing)")


def main(argv: Sequence[str] | None = None) -> None:
    args, _, _ = parse_config(
        Figure5Config, None, argv, prog="python -m bench.figure5",
        description="Tables and the paper's Figure 5 from a pytest-benchmark JSON of bench/bench_sources.py.",
    )  # fmt: skip
    out = check_creatable(args.out)
    data = merged([read_json(Path(name), "benchmark JSON") for name in args.bench_json], args.bench_json)
    table = rows(data)
    if not table:
        names = ", ".join(args.bench_json)
        raise InputError(f"{names}: no benchmarks of bench/bench_sources.py in it: run it with --benchmark-json")
    make_output_dir(out)
    atomic_write_text(out / "sources.csv", to_csv(table))
    text = markdown(table, data)
    atomic_write_text(out / "sources.md", text + "\n")
    plotted = plot(table, out / "figure5.png")
    print(text)
    print(f"wrote {out / 'sources.csv'}, {out / 'sources.md'}", end="")
    print(f", {out / 'figure5.png'}" if plotted else "; no epoch-time benchmarks in the JSON, so no figure5.png")


def cli_main(argv: Sequence[str] | None = None) -> int:
    """main() with the repository's one-line errors: exit status 2 for bad input, else 0."""
    return run(main, "python -m bench.figure5", argv)


if __name__ == "__main__":
    import sys

    sys.exit(cli_main())
