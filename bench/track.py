"""Regression tracking of the Continuous-Sampling path: a same-run A/B gate and a history of its figures.

    python -m bench.track ab [--base REV] [--rounds 4]      # base vs head, interleaved; exit 1 on a regression
    python -m bench.track record --ab AB.json [--bench BENCH.json]   # one history record of the measured commit
    python -m bench.track backfill                           # records from the benchmark JSONs git already holds
    python -m bench.track report                             # the history as a table
    python -m bench.track plot [--out results/bench/history/trend.png]

What is gated and how the decision is made: docs/benchmarks.md. `ab`'s default base is the newest ancestor of
HEAD with a record that `ab` wrote (results/bench/history), else HEAD's parent. Bad input (a base that does not
exist or cannot run the probe, a history record that is not JSON, two records of one commit and machine): one
line, exit status 2.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import ab, history
from bench.compare import check_benchmark_json, read_json
from mlvgm.cli import run
from mlvgm.config import check_ranges, option, parse_config
from mlvgm.errors import InputError
from mlvgm.io import atomic_write_json, check_output_file
from mlvgm.provenance import cpu_name

PROG = "python -m bench.track"
DEFAULT_ROUNDS = 4
HISTORY_HELP = "folder of history records"
HISTORY_DEFAULT = str(history.HISTORY)
TREND_DEFAULT = str(history.HISTORY / "trend.png")


def this_machine() -> str:
    return history.machine_name(cpu_name(), len(os.sched_getaffinity(0)))


def default_base(records: Sequence[history.Record], *, repo: Path = ab.REPO) -> tuple[str, str]:
    """(commit, why): the newest proper ancestor of HEAD with an `ab` record, else HEAD's parent."""
    recorded = {r.commit for r in records if r.origin == "ab"}
    try:
        ancestors = ab.git("rev-list", "HEAD~1", cwd=repo).split()
    except subprocess.CalledProcessError:
        raise InputError("HEAD has no parent to compare with: give --base REV") from None
    for commit in ancestors:
        if commit in recorded:
            return commit, "the newest ancestor with a history record"
    return ancestors[0], "HEAD's parent (no ancestor has a history record yet)"


@dataclass(frozen=True, kw_only=True)
class ABConfig:
    base: str = option("", "base revision (default: the newest ancestor with a history record, else HEAD~1)")
    rounds: int = option(DEFAULT_ROUNDS, "rounds; each measures base and head once, in fresh processes")
    count_rounds: int = option(2, "rounds (of each arm) that also measure the exact counts")
    steps: int = option(ab.STEPS, "timed training steps per arm and round")
    threshold: float = option(0.10, "the change the gate is sized to catch, as a fraction")
    alpha: float = option(0.05, "false-alarm rate over all gated figures")
    out: str = option(".cache/bench-ab/ab.json", "where the rounds and verdicts go (JSON)")
    history: str = option(HISTORY_DEFAULT, HISTORY_HELP)

    def __post_init__(self) -> None:
        if self.rounds < 2:
            raise InputError(f"--rounds must be at least 2 (a paired interval needs 2), got {self.rounds}")
        if self.steps < 1:
            raise InputError(f"--steps must be at least 1, got {self.steps}")
        if not 1 <= self.count_rounds <= self.rounds:
            raise InputError(f"--count_rounds must be in [1, --rounds], got {self.count_rounds}")
        check_ranges(self, positive=("threshold", "alpha"), flag="--")
        if self.threshold >= 1 or self.alpha >= 1:
            raise InputError("--threshold and --alpha are fractions below 1")


def run_ab(argv: Sequence[str]) -> int:
    config, _, _ = parse_config(
        ABConfig,
        None,
        argv,
        prog=f"{PROG} ab",
        description="Same-run A/B of the gated CS figures; exit 1 on a regression.",
    )
    return ab_command(config)


def ab_command(config: ABConfig, *, repo: Path = ab.REPO, start: Callable[[Path, Path], ab.Worker] = ab.Worker) -> int:
    """`ab` on the checkout `repo` (its working tree is the head arm); 1 on a regression, else 0."""
    out = check_output_file(config.out, flag="--out", suffixes=(".json",))
    if config.base:
        base, why = ab.resolve_commit(config.base, cwd=repo), f"--base {config.base}"
    else:
        base, why = default_base(history.read_history(Path(config.history)), repo=repo)
    head = ab.git("rev-parse", "HEAD", cwd=repo)
    dirty = bool(ab.git("status", "--porcelain", "--untracked-files=no", cwd=repo))
    print(
        f"A/B: base {base[:10]} ({why}) against head {head[:10]}{' + uncommitted changes' if dirty else ''}, "
        f"{config.rounds} rounds in fresh processes, {this_machine()}",
        flush=True,
    )
    with ab.worktree(base, repo=repo) as tree:
        try:
            results = ab.measure(
                {"base": tree, "head": repo},
                config.rounds,
                out.parent / "rounds",
                count_rounds=config.count_rounds,
                steps=config.steps,
                start=start,
            )
        except ab.ProbeFailed as exc:
            if exc.tree == tree:
                raise InputError(
                    f"the base {base[:10]} cannot run this benchmark ({exc.last_line}): give a newer --base"
                ) from None
            raise
    decisions = ab.decide_figures(results["base"], results["head"], threshold=config.threshold, alpha=config.alpha)
    counts = ab.compare_counts(results["base"], results["head"])
    medians = {arm: ab.medians(rounds) for arm, rounds in results.items()}
    print(ab.table(decisions, counts, medians["base"], medians["head"]))
    regressed = [n for n, d in [*decisions.items(), *counts.items()] if d.verdict == "regression"]
    first = results["head"][0]
    atomic_write_json(
        out,
        {
            "schema": history.SCHEMA,
            "base": {"commit": base, "why": why},
            "head": {"commit": head, "dirty": dirty, "date": ab.git("show", "-s", "--format=%cI", head, cwd=repo)},
            "machine": this_machine(),
            "python": platform.python_version(),
            "torch": first.get("torch"),
            "co2_method": first.get("co2_method"),
            "cs_path": first.get("cs_path"),
            "rounds": config.rounds,
            "threshold": config.threshold,
            "alpha": config.alpha,
            "medians": medians,
            "counts": {arm: rounds[0].get("counts", {}) for arm, rounds in results.items()},
            **ab.as_json(decisions, counts),
            "results": results,
            "run": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    )
    print(
        f"{'REGRESSION in ' + ', '.join(regressed) if regressed else 'no regression'} "
        f"(threshold {config.threshold:.0%}, alpha {config.alpha} over {len(decisions)} timed figures); "
        f"rounds in {out}"
    )
    return 1 if regressed else 0


@dataclass(frozen=True, kw_only=True)
class RecordConfig:
    ab: str = option(help="the JSON `bench.track ab` wrote (--out)")
    bench: str = option(
        "", "pytest-benchmark JSON of bench_sources' CI subset from the same commit (per-source figures)"
    )
    history: str = option(HISTORY_DEFAULT, HISTORY_HELP)
    replace: bool = option(False, "replace this commit and machine's record")


def commit_date(commit: str) -> str:
    return ab.git("show", "-s", "--format=%cI", commit)


def run_record(argv: Sequence[str]) -> int:
    config, _, _ = parse_config(
        RecordConfig,
        None,
        argv,
        prog=f"{PROG} record",
        description="Write the history record of the commit an A/B run measured.",
    )
    result = read_json(Path(config.ab), "A/B result", f"give the --out of {PROG} ab")
    if not isinstance(result, dict) or result.get("schema") != history.SCHEMA or "medians" not in result:
        raise InputError(f"{config.ab} is not what {PROG} ab writes: give its --out")
    head = result["head"]
    if head["dirty"]:
        raise InputError(f"{config.ab} measured uncommitted changes: commit them and rerun {PROG} ab")
    sources: dict = {}
    if config.bench:
        bench = check_benchmark_json(read_json(Path(config.bench), "benchmark JSON"), config.bench)
        measured = str((bench.get("commit_info") or {}).get("id"))
        if measured != head["commit"] or (bench.get("commit_info") or {}).get("dirty"):
            raise InputError(
                f"{config.bench} measured {measured[:10]}, not the A/B head {head['commit'][:10]} "
                "(or a dirty tree): run both on one clean commit"
            )
        sources = history.sources_of(bench)
    record = {
        "schema": history.SCHEMA,
        "commit": head["commit"],
        "commit_date": head["date"],
        "machine": result["machine"],
        "origin": "ab",
        "from": f"{PROG} ab, {result['rounds']} rounds against {result['base']['commit'][:10]}, run {result['run']}",
        "python": result["python"],
        "torch": result["torch"],
        "gated": {"figures": result["medians"]["head"], "counts": result["counts"]["head"]},
        "ab": {"base": result["base"]["commit"], **result["verdicts"]},
        "co2_method": result["co2_method"],
        "sources": sources,
    }
    write_record(record, Path(config.history), replace=config.replace)
    return 0


def write_record(record: dict, folder: Path, *, replace: bool) -> Path:
    """Write `record` into `folder` (InputError if its commit and machine have one, unless `replace`)."""
    existing = [
        r for r in history.read_history(folder) if (r.commit, r.machine) == (record["commit"], record["machine"])
    ]
    if existing and not replace:
        raise InputError(
            f"{existing[0].path} already records commit {record['commit'][:10]} on {record['machine']}:"
            " pass --replace true to replace it"
        )
    for old in existing:
        old.path.unlink()
    path = folder / history.file_name(record["commit"], record["machine"])
    atomic_write_json(path, history.check_record(record, path))
    print(f"wrote {path}")
    return path


BACKFILL_FILES = ("results/bench/sources.json", "results/bench/cs-step.json")


@dataclass(frozen=True, kw_only=True)
class BackfillConfig:
    history: str = option(HISTORY_DEFAULT, HISTORY_HELP)


def backfilled(files: Sequence[str] = BACKFILL_FILES) -> list[dict]:
    """Records of every committed version of `files` (pytest-benchmark JSONs), newest version of each commit and
    machine first wins; labelled with the file and the commit that holds it."""
    records: dict[tuple[str, str], dict] = {}
    for name in files:
        for holder in ab.git("log", "--format=%H", "--", name).split():
            try:
                bench = check_benchmark_json(read_json_text(ab.git("show", f"{holder}:{name}"), name), name)
            except (InputError, subprocess.CalledProcessError):
                continue  # deleted in that commit, or not a benchmark JSON then
            info = bench.get("commit_info") or {}
            commit = str(info.get("id"))
            try:
                date = commit_date(commit)
            except subprocess.CalledProcessError:
                continue  # measured a commit this history no longer has
            key = (commit, history.bench_machine(bench))
            record = records.setdefault(
                key,
                {
                    "schema": history.SCHEMA,
                    "commit": commit,
                    "commit_date": date,
                    "machine": key[1],
                    "origin": "backfilled",
                    "from": [],
                    "dirty": bool(info.get("dirty")),
                    "sources": {},
                },
            )
            if any(f.startswith(name) for f in record["from"]):
                continue  # an older version of the same file for the same commit: the newer one stands
            record["from"].append(f"{name} as committed in {holder[:10]}")
            for source, figures in history.sources_of(bench).items():
                record["sources"].setdefault(source, figures)
    return list(records.values())


def read_json_text(text: str, name: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name} is not JSON ({exc})") from None


def run_backfill(argv: Sequence[str]) -> int:
    config, _, _ = parse_config(
        BackfillConfig,
        None,
        argv,
        prog=f"{PROG} backfill",
        description="History records from the benchmark JSONs in git's history.",
    )
    folder = Path(config.history)
    have = {(r.commit, r.machine) for r in history.read_history(folder)}
    written = 0
    for record in backfilled():
        if (record["commit"], record["machine"]) in have:
            continue
        write_record(record, folder, replace=False)
        written += 1
    print(f"{written} backfilled records written, {len(have)} already there")
    return 0


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    history: str = option(HISTORY_DEFAULT, HISTORY_HELP)


def run_report(argv: Sequence[str]) -> int:
    config, _, _ = parse_config(
        ReportConfig, None, argv, prog=f"{PROG} report", description="The history as a Markdown table."
    )
    records = history.read_history(Path(config.history))
    if not records:
        raise InputError(f"no history records in {config.history}: run {PROG} backfill or make bench-record")
    print(history.report(records))
    return 0


@dataclass(frozen=True, kw_only=True)
class PlotConfig:
    history: str = option(HISTORY_DEFAULT, HISTORY_HELP)
    out: str = option(TREND_DEFAULT, "the figure (.png or .svg)")


def run_plot(argv: Sequence[str]) -> int:
    from bench.trend import has_points, plot

    config, _, _ = parse_config(
        PlotConfig, None, argv, prog=f"{PROG} plot", description="Epoch time, images/s and CO2 per commit and machine."
    )
    out = check_output_file(config.out, flag="--out", suffixes=(".png", ".svg"))
    records = [r for r in history.read_history(Path(config.history)) if has_points(r)]
    if not records:
        raise InputError(f"no history record in {config.history} has a figure to plot: run make bench-record")
    plot(records, out)
    print(f"wrote {out} ({len(records)} records)")
    return 0


COMMANDS = {"ab": run_ab, "record": run_record, "backfill": run_backfill, "report": run_report, "plot": run_plot}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        given = f"{args[0]!r}" if args else "none"
        raise InputError(f"give a command, one of {', '.join(COMMANDS)} (got {given}); see the module docstring")
    return COMMANDS[args[0]](args[1:])


def cli(argv: Sequence[str] | None = None) -> int:
    return run(main, PROG, argv)


if __name__ == "__main__":
    sys.exit(cli())
