"""Calibration of the A/B gate on this machine: how often it cries wolf, how often it catches a slowdown.

    python -m bench.gate_calibration --out results/bench/gate-calibration [--blocks 20] [--rounds 4]

Each block is one `bench.track ab` run's worth of rounds with four arms instead of two: each round starts a fresh
probe process per arm and measures them in turn, a data-path round or a training step at a time (bench.ab):

- `head`:  this checkout (the base of every comparison, as the A/B base in CI);
- `copy`:  a scratch worktree of HEAD, unchanged: head against itself (A/A);
- `slow10`, `slow5`: scratch worktrees of HEAD with a slowdown injected into the copy only, never a switch in the
  library: `ContinuousSampling.batch` and `TrainStep.__call__` spin for 10% (5%) of each call's own time, as slower
  code would, so images/s fall by 1/1.1 (1/1.05), epoch time and the CPU share of CO2 rise.

Per block the gate decides copy, slow10 and slow5 against head exactly as `bench.track ab` does (bench.ab); a block
counts as a false alarm (A/A) or a detection (A/B) when any gated figure or count is called a regression. Blocks
are written as they finish and skipped on a rerun, so a stopped calibration resumes, on the same machine and with
the same measured code (mlvgm/, kernels/, bench/) only. The summary (with Clopper-Pearson intervals) goes to
summary.json and is printed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from bench import ab
from bench.gate import log_worse
from bench.probe import FIGURES
from bench.track import DEFAULT_ROUNDS, this_machine
from mlvgm.cli import run
from mlvgm.config import option, parse_config
from mlvgm.errors import InputError
from mlvgm.io import atomic_write_json, check_creatable

PROG = "python -m bench.gate_calibration"
ARMS = {"copy": 0.0, "slow10": 0.10, "slow5": 0.05}  # arm -> injected slowdown (fraction of each call's own time)

INJECTION = """

# --- injected by bench.gate_calibration into a scratch copy: spin for {fraction} of each call's own time ---
def _calibration_slowed(call, fraction={fraction}):
    import functools
    import time

    @functools.wraps(call)
    def slowed(*args, **kwargs):
        start = time.perf_counter()
        out = call(*args, **kwargs)
        until = time.perf_counter() + fraction * (time.perf_counter() - start)
        while time.perf_counter() < until:
            pass
        return out

    return slowed


{target} = _calibration_slowed({target})
"""
TARGETS = {"mlvgm/data/sources.py": "ContinuousSampling.batch", "mlvgm/train_step.py": "TrainStep.__call__"}


def inject(tree: Path, fraction: float) -> None:
    """Append the slowdown to the copy's CS batch and training step."""
    for name, target in TARGETS.items():
        path = tree / name
        path.write_text(path.read_text() + INJECTION.format(fraction=fraction, target=target))


def regressed(decisions: dict, counts: dict) -> list[str]:
    return [n for n, d in [*decisions.items(), *counts.items()] if d.verdict == "regression"]


def judge(results: dict[str, list[dict]], *, threshold: float, alpha: float) -> dict[str, dict]:
    """Each arm against head, as `bench.track ab` decides it."""
    judged = {}
    for arm in ARMS:
        decisions = ab.decide_figures(results["head"], results[arm], threshold=threshold, alpha=alpha)
        counts = ab.compare_counts(results["head"], results[arm])
        judged[arm] = {**ab.as_json(decisions, counts)["verdicts"], "regressed": regressed(decisions, counts)}
    return judged


def clopper_pearson(hits: int, n: int, level: float = 0.95) -> tuple[float, float]:
    tail = (1 - level) / 2
    low = 0.0 if hits == 0 else float(stats.beta.ppf(tail, hits, n - hits + 1))
    high = 1.0 if hits == n else float(stats.beta.ppf(1 - tail, hits + 1, n - hits))
    return low, high


def summarise(blocks: Sequence[dict]) -> dict:
    """Alarm rates per arm and figure, the measured change and the per-round noise."""
    summary: dict = {"blocks": len(blocks), "arms": {}}
    for arm, fraction in ARMS.items():
        flagged = sum(bool(b["judged"][arm]["regressed"]) for b in blocks)
        per_figure = {
            name: sum(b["judged"][arm]["figures"].get(name, {}).get("verdict") == "regression" for b in blocks)
            for name in FIGURES
        }
        worse = {name: [w for b in blocks for w in b["worse"][arm].get(name, [])] for name in FIGURES}
        summary["arms"][arm] = {
            "injected": fraction,
            "gate_failed": flagged,
            "gate_failed_interval_95": clopper_pearson(flagged, len(blocks)),
            "regression_per_figure": per_figure,
            "verdicts_per_figure": {
                name: {
                    v: sum(b["judged"][arm]["figures"].get(name, {}).get("verdict") == v for b in blocks)
                    for v in ("regression", "improvement", "no change", "undecided")
                }
                for name in FIGURES
            },
            "mean_change": {n: math.expm1(sum(w) / len(w)) if w else None for n, w in worse.items()},
            "round_sd_log": {n: stats.tstd(w) if len(w) > 1 else None for n, w in worse.items()},
        }
    summary["seconds_per_block"] = sum(b["seconds"] for b in blocks) / max(1, len(blocks))
    return summary


MEASURED = ("mlvgm", "kernels", "bench", "pyproject.toml")  # what a block's numbers depend on


def check_resumable(blocks: Path, head: str, machine: str) -> None:
    """InputError unless every block already in `blocks` measured this machine and HEAD's measured code."""
    for path in sorted(blocks.glob("block-*.json")):
        block = json.loads(path.read_text())
        if block["machine"] != machine:
            raise InputError(f"{path} was measured on {block['machine']}, this is {machine}: give a new --out")
        same = subprocess.run(["git", "diff", "--quiet", block["commit"], head, "--", *MEASURED], cwd=ab.REPO)
        if block["commit"] != head and same.returncode != 0:
            raise InputError(f"{path} measured {block['commit'][:10]}, whose {', '.join(MEASURED)} differ from "
                             "HEAD's: give a new --out")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class CalibrationConfig:
    out: str = option(help="folder for the blocks and summary.json")
    blocks: int = option(20, "A/B runs to calibrate on (each arm)")
    rounds: int = option(DEFAULT_ROUNDS, "rounds per block, as bench.track ab --rounds")
    count_rounds: int = option(2, "as bench.track ab --count_rounds")
    steps: int = option(ab.STEPS, "as bench.track ab --steps")
    threshold: float = option(0.10, "as bench.track ab")
    alpha: float = option(0.05, "as bench.track ab")


def main(argv: Sequence[str] | None = None) -> dict:
    config, _, _ = parse_config(
        CalibrationConfig,
        None,
        argv,
        prog=PROG,
        description="False-alarm and detection rates of the A/B gate on this machine.",
    )
    out = check_creatable(Path(config.out), flag="--out")
    if ab.git("status", "--porcelain", "--untracked-files=no"):
        raise InputError("the checkout has uncommitted changes: the calibration measures HEAD, commit first")
    head = ab.git("rev-parse", "HEAD")
    (out / "blocks").mkdir(parents=True, exist_ok=True)
    check_resumable(out / "blocks", head, this_machine())
    with ab.worktree(head) as copy, ab.worktree(head) as slow10, ab.worktree(head) as slow5:
        inject(slow10, ARMS["slow10"])
        inject(slow5, ARMS["slow5"])
        trees = {"head": ab.REPO, "copy": copy, "slow10": slow10, "slow5": slow5}
        for block in range(config.blocks):
            path = out / "blocks" / f"block-{block:02d}.json"
            if path.exists():
                continue
            start = time.perf_counter()
            results = ab.measure(
                trees,
                config.rounds,
                out / "rounds",
                count_rounds=config.count_rounds,
                steps=config.steps,
                progress=lambda line, b=block: print(f"block {b + 1}/{config.blocks} {line}", flush=True),
            )
            worse = {
                arm: {
                    name: [
                        log_worse(h["figures"][name], a["figures"][name], higher_is_better=FIGURES[name])
                        for h, a in zip(results["head"], results[arm], strict=True)
                        if h["figures"].get(name) is not None and a["figures"].get(name) is not None
                    ]
                    for name in FIGURES
                }
                for arm in ARMS
            }
            judged = judge(results, threshold=config.threshold, alpha=config.alpha)
            atomic_write_json(
                path,
                {
                    "block": block,
                    "commit": head,
                    "machine": this_machine(),
                    "rounds": config.rounds,
                    "threshold": config.threshold,
                    "alpha": config.alpha,
                    "seconds": time.perf_counter() - start,
                    "judged": judged,
                    "worse": worse,
                    "results": results,
                },
            )
            print(
                f"block {block + 1}: " + "; ".join(f"{arm} {j['regressed'] or 'passes'}" for arm, j in judged.items()),
                flush=True,
            )
    blocks = [json.loads(p.read_text()) for p in sorted((out / "blocks").glob("block-*.json"))]
    summary = {"commit": head, "machine": this_machine(), **summarise(blocks)}
    atomic_write_json(out / "summary.json", summary)
    print(json.dumps(summary, indent=1))
    return summary


def cli(argv: Sequence[str] | None = None) -> int:
    return run(main, PROG, argv)


if __name__ == "__main__":
    sys.exit(cli())
