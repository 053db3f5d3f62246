"""Regression check on the ratios a benchmark run measured against its own baselines.

    python -m bench.compare BENCH.json --baseline results/bench/baseline-ci.json [--tolerance 0.30]
    python -m bench.compare BENCH.json --baseline results/bench/baseline-ci.json --write_baseline

Absolute times move with the machine and whatever else runs on it; a ratio of two members of one
group, measured in the same run on the same machine, moves much less (DESIGN.md, section 5). So the
gate reads only such ratios from a pytest-benchmark JSON:

- `sources-batch{B}`       CS images/s / each loader's images/s                       higher is better
- `epoch-time-batch{B}`    each source's time per step / the resident limit's          lower is better
- `shapes-render-64px`     eager time / compiled time                                  higher is better
- `anchor-latents`         Philox stream time / torch generator time (its cost)        lower is better
- `*-forward-batch*`       best eager variant's time / compiled time (bench_generators) higher is better
- `infonce-*`, `perturb-*` the paper's code time / each implementation's time            higher is better
                           (the torch reference's time where the paper's code was skipped; not the
                           compiled InfoNCE's backward row, which is only a final scaling)
- `quantify-*`             sequential time / joint time                                higher is better
- `cs-step`                eager CS time / the compiled step's, per batch               higher is better
                           compiled images/s at the smallest batch / at the largest    higher is better
                           the compiled step's top-level ops outside graphs (a count)  lower is better

It prints every tracked figure with its baseline, its value now and the change, beside the absolute
figures behind it (shown, never gated), and exits 1 when a ratio is worse than its baseline by more
than the tolerance (a drop of more than that fraction for higher-is-better ratios, a rise for
lower-is-better ones), 0 otherwise. A figure the baseline has and this run lacks (DALI not installed,
a GPU-only member) is listed as missing, not failed; a new one is listed as new. `--write_baseline`
stores this run's figures, machine and git SHA as the new baseline (atomically), and exits 0.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlvgm.cli import run
from mlvgm.config import option, parse_config
from mlvgm.errors import InputError
from mlvgm.io import atomic_write_json, check_output_file

SCHEMA = 1
DEFAULT_TOLERANCE = 0.30


@dataclass(frozen=True)
class Figure:
    """One tracked ratio: its value, which way is better, and the absolute figures it came from."""

    value: float
    higher_is_better: bool
    detail: str  # the absolute medians (or rates) behind the ratio, for people: never gated


def _median(b: dict) -> float:
    return float(b["stats"]["median"])


def _ms(b: dict) -> str:
    return f"{_median(b) * 1e3:.4g} ms"


def _member(b: dict, *keys: str) -> str:
    """The name of a benchmark within its group: the first of `keys` in extra_info or params, else its name."""
    for key in keys:
        for where in (b.get("extra_info") or {}, b.get("params") or {}):
            if key in where:
                return str(where[key])
    return str(b["name"])


def _ratio_figures(
    group: str, members: dict[str, dict], reference: str, *, reference_over_member: bool, higher: bool, label: str
) -> dict[str, Figure]:
    """reference / member (or member / reference) for every other member: name 'group/<member>_<label>'."""
    out = {}
    ref = members[reference]
    for name, b in sorted(members.items()):
        if name == reference:
            continue
        value = _median(ref) / _median(b) if reference_over_member else _median(b) / _median(ref)
        out[f"{group}/{name}_{label}"] = Figure(value, higher, f"{reference} {_ms(ref)}, {name} {_ms(b)}")
    return out


def _sources(group: str, members: dict[str, dict]) -> dict[str, Figure]:
    if "cs" not in members:
        return {}
    cs = members["cs"]
    out = {}
    for name, b in sorted(members.items()):
        if name == "cs":
            continue
        # images/s = images per round / median; equal rounds per group, so medians give the same ratio
        value = _rate(cs) / _rate(b)
        out[f"{group}/cs_vs_{name}"] = Figure(value, True, f"cs {_rate(cs):,.0f} img/s, {name} {_rate(b):,.0f} img/s")
    return out


def _rate(b: dict) -> float:
    info = b.get("extra_info") or {}
    return float(info["images_per_s"]) if "images_per_s" in info else 1.0 / _median(b)


def _epoch_time(group: str, members: dict[str, dict]) -> dict[str, Figure]:
    if "resident" not in members:
        return {}
    return _ratio_figures(
        group, members, "resident", reference_over_member=False, higher=False, label="vs_resident"
    )  # fmt: skip


def _pair(group: str, members: dict[str, dict], name: str, base: tuple[str, str], other: tuple[str, str], *,
          higher: bool) -> dict[str, Figure]:  # fmt: skip
    """One figure from two members, each (key, label): base's time over other's (a speedup) when higher is
    better, else other's over base's (a cost); nothing when either is missing."""
    first, second = members.get(base[0]), members.get(other[0])
    if first is None or second is None:
        return {}
    ratio = _median(first) / _median(second) if higher else _median(second) / _median(first)
    return {f"{group}/{name}": Figure(ratio, higher, f"{base[1]} {_ms(first)}, {other[1]} {_ms(second)}")}


def _shapes_render(group: str, members: dict[str, dict]) -> dict[str, Figure]:
    eager, compiled = ("test_render_eager", "eager"), ("test_render_compiled", "compiled")
    return _pair(group, members, "compiled_speedup", eager, compiled, higher=True)


def _anchor_latents(group: str, members: dict[str, dict]) -> dict[str, Figure]:
    torch_gen = ("test_latents_torch_generator", "torch generator")
    philox = ("test_latents_philox_stream", "Philox stream")
    return _pair(group, members, "philox_cost", torch_gen, philox, higher=False)


def _generator_forward(group: str, members: dict[str, dict]) -> dict[str, Figure]:
    eager = {k: b for k, b in members.items() if k.startswith("eager")}
    if "compiled" not in members or not eager:
        return {}
    best_name, best = min(eager.items(), key=lambda kv: _median(kv[1]))
    compiled = members["compiled"]
    detail = f"best eager ({best_name}) {_ms(best)}, compiled {_ms(compiled)}"
    out = {f"{group}/compiled_vs_best_eager": Figure(_median(best) / _median(compiled), True, detail)}
    for variant in ("compiled-bf16", "compiled-cudagraphs-bf16"):  # CUDA only: against the eager fp32 forward
        out |= _pair(group, members, f"{variant}_vs_eager_fp32", ("eager", "eager fp32"), (variant, variant),
                     higher=True)  # fmt: skip
    return out


def _kernels(group: str, members: dict[str, dict]) -> dict[str, Figure]:
    members = {k: b for k, b in members.items() if k != "copy"}  # the copy is a bandwidth ceiling, not an impl
    if group.startswith("infonce-backward-"):
        # The compiled InfoNCE accumulates its gradient in the forward pass: its backward row is only the final
        # scaling (bench/kernels/report.py), a ratio of ~1 ms that means nothing; fwd+bwd is its figure.
        members.pop("compiled", None)
    reference = "paper" if "paper" in members else "torch" if "torch" in members else None
    if reference is None:
        return {}
    return _ratio_figures(
        group, members, reference, reference_over_member=True, higher=True, label=f"vs_{reference}"
    )  # fmt: skip


def _cs_step(group: str, members: dict[str, dict]) -> dict[str, Figure]:
    """Compiled against eager per batch (a speedup), compiled batch 8 over 256 in images/s (1 = no per-batch
    cost), and the compiled step's ops outside compiled graphs (a count: lower is better)."""
    out = {}
    batches = sorted({int(name.rsplit("-", 1)[1]) for name in members})
    for batch in batches:
        out |= _pair(group, members, f"compiled_speedup_batch{batch}", (f"eager-{batch}", "eager"),
                     (f"compiled-{batch}", "compiled"), higher=True)  # fmt: skip
        compiled = members.get(f"compiled-{batch}")
        if compiled is not None:
            ops = float(compiled["extra_info"]["ops_outside_graphs"])
            out[f"{group}/compiled_ops_batch{batch}"] = Figure(ops, False, f"{ops:.0f} ops outside compiled graphs")
    small, large = members.get(f"compiled-{batches[0]}"), members.get(f"compiled-{batches[-1]}")
    if small is not None and large is not None and small is not large:
        ratio = _rate(small) / _rate(large)
        detail = f"batch {batches[0]} {_rate(small):,.0f} img/s, batch {batches[-1]} {_rate(large):,.0f} img/s"
        out[f"{group}/compiled_small_over_large_batch"] = Figure(ratio, True, detail)
    return out


def _quantify(group: str, members: dict[str, dict]) -> dict[str, Figure]:
    return _pair(group, members, "joint_speedup", ("False", "sequential"), ("True", "joint"), higher=True)


# group pattern -> (keys naming a member, extractor); the first pattern that matches a group is used
RULES: list[tuple[re.Pattern, tuple[str, ...], Callable[[str, dict[str, dict]], dict[str, Figure]]]] = [
    (re.compile(r"sources-batch\d+"), ("source",), _sources),
    (re.compile(r"epoch-time-batch\d+"), ("source",), _epoch_time),
    (re.compile(r"shapes-render-\w+"), (), _shapes_render),
    (re.compile(r"anchor-latents"), (), _anchor_latents),
    (re.compile(r".+-forward-batch\d+-\w+"), ("variant",), _generator_forward),
    (re.compile(r"infonce-(forward|backward|fwd\+bwd)-N\d+"), ("impl",), _kernels),
    (re.compile(r"perturb-.+"), ("impl",), _kernels),
    (re.compile(r"quantify-.+"), ("joint",), _quantify),
    (re.compile(r"cs-step"), ("member",), _cs_step),
]


def extract(data: dict) -> tuple[dict[str, Figure], list[str]]:
    """(tracked figures by name, groups no rule tracks) of a pytest-benchmark JSON."""
    groups: dict[str, list[dict]] = {}
    for b in data.get("benchmarks", []):
        groups.setdefault(b.get("group") or b["name"], []).append(b)
    figures: dict[str, Figure] = {}
    untracked = []
    for group, benchmarks in sorted(groups.items()):
        rule = next((r for r in RULES if r[0].fullmatch(group)), None)
        if rule is None:
            untracked.append(group)
            continue
        _, keys, extractor = rule
        members = {_member(b, *keys): b for b in benchmarks}
        figures.update(extractor(group, members))
    return figures, untracked


def machine_summary(data: dict) -> str:
    """'AMD EPYC, 2 logical CPUs (node vm)' from a pytest-benchmark JSON's machine_info."""
    machine = data.get("machine_info") or {}
    cpu = machine.get("cpu") or {}
    return (
        f"{cpu.get('brand_raw') or machine.get('processor') or '?'}, {cpu.get('count', '?')} logical CPUs "
        f"(node {machine.get('node', '?')})"
    )


def commit_summary(data: dict) -> str:
    """'git 1a2b3c4d5e (dirty)' from a pytest-benchmark JSON's commit_info."""
    commit = data.get("commit_info") or {}
    return f"git {str(commit.get('id', '?'))[:10]}{' (dirty)' if commit.get('dirty') else ''}"


@dataclass(frozen=True)
class Row:
    name: str
    higher_is_better: bool
    baseline: float | None
    now: float | None
    status: str  # ok, REGRESSED, missing, new
    detail: str

    @property
    def change(self) -> float | None:
        if self.baseline is None or self.now is None or self.baseline == 0:
            return None
        return self.now / self.baseline - 1.0


def is_regression(baseline: float, now: float, *, higher_is_better: bool, tolerance: float) -> bool:
    """Worse than the baseline by more than `tolerance` (a fraction of it), in the figure's bad direction.

    Exactly at the tolerance is not a regression.
    """
    if not math.isfinite(now):
        return True
    if higher_is_better:
        return now < baseline * (1.0 - tolerance)
    return now > baseline * (1.0 + tolerance)


def compare(now: dict[str, Figure], baseline: dict[str, dict], tolerance: float) -> list[Row]:
    """One row per figure of either side, in name order; `baseline` is the JSON form (name -> dict)."""
    rows = []
    for name in sorted(set(now) | set(baseline)):
        figure, base = now.get(name), baseline.get(name)
        if figure is None:
            rows.append(Row(name, bool(base["higher_is_better"]), float(base["value"]), None, "missing", "-"))
            continue
        if base is None:
            rows.append(Row(name, figure.higher_is_better, None, figure.value, "new", figure.detail))
            continue
        regressed = is_regression(
            float(base["value"]), figure.value, higher_is_better=figure.higher_is_better, tolerance=tolerance
        )
        status = "REGRESSED" if regressed else "ok"
        rows.append(Row(name, figure.higher_is_better, float(base["value"]), figure.value, status, figure.detail))
    return rows


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width text table."""

    def number(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    header = ("figure", "better", "baseline", "now", "change", "status", "absolute now (not gated)")
    body = [
        (r.name, "higher" if r.higher_is_better else "lower", number(r.baseline), number(r.now),
         "-" if r.change is None else f"{100 * r.change:+.1f}%", r.status, r.detail)
        for r in rows
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header) - 1)]
    lines = []
    for line in [header, *body]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1])
    return "\n".join(lines)


def baseline_record(data: dict, figures: dict[str, Figure], source: str) -> dict:
    """The JSON a baseline file holds: every figure, the machine and the git SHA it was measured at."""
    machine = data.get("machine_info") or {}
    return {
        "schema": SCHEMA,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "from": source,
        "run_datetime": data.get("datetime"),
        "machine": {
            "summary": machine_summary(data),
            "node": machine.get("node"),
            "cpu": (machine.get("cpu") or {}).get("brand_raw"),
            "cpu_count": (machine.get("cpu") or {}).get("count"),
            "system": machine.get("system"),
            "release": machine.get("release"),
            "python": machine.get("python_version"),
        },
        "commit": {k: (data.get("commit_info") or {}).get(k) for k in ("id", "dirty", "branch")},
        "figures": {
            name: {"value": f.value, "higher_is_better": f.higher_is_better, "detail": f.detail}
            for name, f in sorted(figures.items())
        },
    }


BENCH_FIX = "give the file pytest --benchmark-json wrote"


def read_json(path: Path, what: str, fix: str = BENCH_FIX) -> object:
    """The JSON in `path`, or InputError naming `what` it should be and the `fix`."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist: {fix}") from None
    except OSError as exc:  # a folder, a file we may not read
        raise InputError(f"cannot read {what} {path} ({exc.strerror}): {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {path} is not JSON ({exc}): {fix}") from None


def check_benchmark_json(data: object, path: str | Path, stats: tuple[str, ...] = ("median",)) -> dict:
    """`data` if it is what pytest --benchmark-json writes, as far as the bench scripts read it: an object
    whose "benchmarks" each have a name and numbers for `stats`; else InputError."""
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise InputError(f"{path} is not a pytest-benchmark JSON (no list of 'benchmarks'): {BENCH_FIX}")
    for index, b in enumerate(data["benchmarks"]):
        named, numbers = (isinstance(b.get("name"), str), b.get("stats")) if isinstance(b, dict) else (False, None)
        if (
            not named
            or not isinstance(numbers, dict)
            or not all(isinstance(numbers.get(k), int | float) for k in stats)
        ):
            raise InputError(f"{path}: benchmark {index} lacks a name or its {'/'.join(stats)} stats: {BENCH_FIX}")
    return data


def is_baseline(record: object) -> bool:
    """Whether `record` is a baseline of this SCHEMA, as baseline_record writes it."""
    if not isinstance(record, dict) or record.get("schema") != SCHEMA or not isinstance(record.get("machine"), dict):
        return False
    figures = record.get("figures")
    return isinstance(figures, dict) and all(
        isinstance(f, dict) and isinstance(f.get("value"), int | float) and isinstance(f.get("higher_is_better"), bool)
        for f in figures.values()
    )


def read_baseline(path: Path) -> dict:
    """The baseline in `path`, or InputError saying to rewrite it."""
    old = read_json(path, "baseline", "rewrite it with --write_baseline")
    if not is_baseline(old):
        raise InputError(f"{path} is not a baseline of schema {SCHEMA}: rewrite it with --write_baseline")
    return old


@dataclass(frozen=True, kw_only=True)
class CompareConfig:
    bench_json: str = option(help="pytest-benchmark JSON (--benchmark-json)", positional=True)
    baseline: str = option(help="baseline JSON (written by --write_baseline)")
    tolerance: float = option(DEFAULT_TOLERANCE, "fraction a ratio may worsen before it fails, in [0, 1)")
    write_baseline: bool = option(False, "store this run as the baseline, exit 0")

    def __post_init__(self) -> None:
        if not 0.0 <= self.tolerance < 1.0:
            raise InputError(f"--tolerance is a fraction in [0, 1), got {self.tolerance}")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the comparison; return 1 on a regression, 0 otherwise (InputError for bad input)."""
    args, _, _ = parse_config(
        CompareConfig, None, argv, prog="python -m bench.compare",
        description="Compare the same-run ratios of a pytest-benchmark JSON with a baseline; exit 1 on a regression.",
    )  # fmt: skip
    data = check_benchmark_json(read_json(Path(args.bench_json), "benchmark JSON"), args.bench_json)
    figures, untracked = extract(data)
    baseline_path = Path(args.baseline)
    old = None
    if args.write_baseline:
        check_output_file(baseline_path, flag="--baseline", suffixes=(".json",))
    elif not baseline_path.exists():
        raise InputError(f"baseline {baseline_path} does not exist: write one from a trusted run with --write_baseline")
    if baseline_path.exists():
        try:
            old = read_baseline(baseline_path)
        except InputError:
            if not args.write_baseline:
                raise
            print(f"{baseline_path} is not a readable baseline: --write_baseline replaces it")

    print(f"now:      {machine_summary(data)}, {commit_summary(data)}, run {data.get('datetime', '?')[:19]}")
    if old is not None:
        base_commit = str((old.get("commit") or {}).get("id") or "?")[:10]
        base_run = str(old.get("run_datetime"))[:19]
        print(f"baseline: {old['machine'].get('summary', '?')}, git {base_commit}, run {base_run}")
        if old["machine"].get("summary") != machine_summary(data):
            print("note: the baseline comes from another machine; ratios travel better than times, but not perfectly")
    rows = compare(figures, old["figures"] if old is not None else {}, args.tolerance)
    print(table(rows))
    if untracked:
        print(f"groups without a tracked ratio: {', '.join(untracked)}")
    regressed = [r for r in rows if r.status == "REGRESSED"]
    missing = [r for r in rows if r.status == "missing"]
    print(f"{len(rows) - len(missing)} figures, {len(missing)} missing, {len(regressed)} regressed "
          f"(tolerance {args.tolerance:.0%})")  # fmt: skip

    if args.write_baseline:
        atomic_write_json(baseline_path, baseline_record(data, figures, str(args.bench_json)))
        print(f"wrote the baseline {baseline_path} ({len(figures)} figures)")
        return 0
    return 1 if regressed else 0


def cli(argv: Sequence[str] | None = None) -> int:
    """main() with the repository's one-line errors: 2 for bad input, else main's exit status."""
    return run(main, "python -m bench.compare", argv)


if __name__ == "__main__":
    sys.exit(cli())
