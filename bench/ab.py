"""Same-run A/B of the gated Continuous-Sampling figures: base and head interleaved, fresh processes, one verdict
per figure.

The base revision is checked out in a scratch `git worktree`; each round runs `bench.probe` once per arm, each in a
fresh process of this virtual environment, the arms' order alternating (base-head, head-base, ...) so that a drift
of the machine over the run falls on both alike. Per timed figure the rounds' paired log ratios go to
`bench.gate.decide`; the counts (`bench.probe.COUNTS`), measured in the first `count_rounds` rounds of each arm,
are compared exactly: they do not move with the machine, so any rise is a regression.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.gate import Decision, decide, log_worse
from bench.probe import COUNTS, FIGURES
from mlvgm.errors import InputError

REPO = Path(__file__).resolve().parent.parent


def git(*args: str, cwd: Path = REPO) -> str:
    """git's stdout, stripped; CalledProcessError when git fails."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def resolve_commit(rev: str, *, cwd: Path = REPO) -> str:
    """The full SHA of `rev`, or InputError when it names no commit here."""
    try:
        return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=cwd)
    except subprocess.CalledProcessError:
        raise InputError(
            f"base revision {rev!r} does not exist in this repository: give a commit, tag or branch "
            "(git log --oneline), or leave --base out for the last recorded commit"
        ) from None


@contextlib.contextmanager
def worktree(commit: str, *, repo: Path = REPO) -> Iterator[Path]:
    """A detached scratch checkout of `commit`, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="mlvgm-ab-") as scratch:
        tree = Path(scratch) / "tree"
        git("worktree", "add", "--detach", "--quiet", str(tree), commit, cwd=repo)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=repo, capture_output=True)
            subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)


class ProbeFailed(RuntimeError):
    def __init__(self, tree: Path, returncode: int, stderr: str) -> None:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        self.tree = tree
        self.last_line = lines[-1] if lines else "(no output)"
        super().__init__(f"bench.probe on {tree} exited {returncode}: {self.last_line}")


def run_probe(tree: Path, out: Path, *, proxies: bool) -> dict:
    """One fresh-process measurement of the library in `tree` (bench.probe's JSON)."""
    command = [sys.executable, "-m", "bench.probe", "--tree", str(tree), "--out", str(out)]
    done = subprocess.run(
        [*command, "--proxies", "true" if proxies else "false"], cwd=REPO, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ProbeFailed(tree, done.returncode, done.stderr)
    return json.loads(out.read_text())


def alternating(arms: Sequence[str], round_index: int) -> list[str]:
    """The arms' order in a round: as given in even rounds, reversed in odd ones (ABBA for two arms)."""
    return list(arms) if round_index % 2 == 0 else list(reversed(arms))


def measure(
    trees: Mapping[str, Path],
    rounds: int,
    workdir: Path,
    *,
    count_rounds: int = 2,
    order: Callable[[Sequence[str], int], list[str]] = alternating,
    progress: Callable[[str], None] = print,
    probe: Callable[..., dict] = run_probe,
) -> dict[str, list[dict]]:
    """Per arm, its probes' results, one per round, the arms interleaved within each round by `order`."""
    results: dict[str, list[dict]] = {arm: [] for arm in trees}
    workdir.mkdir(parents=True, exist_ok=True)
    for r in range(rounds):
        for arm in order(list(trees), r):
            result = probe(trees[arm], workdir / f"{arm}-{r}.json", proxies=r < count_rounds)
            results[arm].append(result)
            shown = ", ".join(f"{name} {result['figures'].get(name) or 0:,.4g}" for name in FIGURES)
            progress(f"round {r + 1}/{rounds} {arm}: {shown}")
    return results


@dataclass(frozen=True)
class CountVerdict:
    verdict: str  # regression / improvement / no change / undecided (the count differs between rounds of one arm)
    base: list[int]
    head: list[int]


def compare_counts(base: Sequence[dict], head: Sequence[dict]) -> dict[str, CountVerdict]:
    """Each count of the rounds that measured it: exactly equal is no change, any rise a regression."""
    verdicts = {}
    for name in COUNTS:
        b = [r["counts"][name] for r in base if name in r.get("counts", {})]
        h = [r["counts"][name] for r in head if name in r.get("counts", {})]
        if not b or not h:
            continue
        if len(set(b)) > 1 or len(set(h)) > 1:
            verdict = "undecided"
        elif h[0] > b[0]:
            verdict = "regression"
        elif h[0] < b[0]:
            verdict = "improvement"
        else:
            verdict = "no change"
        verdicts[name] = CountVerdict(verdict, b, h)
    return verdicts


def decide_figures(
    base: Sequence[dict], head: Sequence[dict], *, threshold: float, alpha: float
) -> dict[str, Decision]:
    """The gate's verdict per timed figure, Bonferroni over the figures both arms measured in every round."""
    measured = [n for n in FIGURES if all(r["figures"].get(n) is not None for r in [*base, *head])]
    decisions = {}
    for name in measured:
        worse = [
            log_worse(b["figures"][name], h["figures"][name], higher_is_better=FIGURES[name])
            for b, h in zip(base, head, strict=True)
        ]
        decisions[name] = decide(worse, threshold=threshold, alpha=alpha, figures=len(measured))
    return decisions


def medians(results: Sequence[dict]) -> dict[str, float | None]:
    """Each timed figure's median over an arm's rounds (None where a round lacked it)."""
    return {
        name: None
        if any(r["figures"].get(name) is None for r in results)
        else statistics.median(r["figures"][name] for r in results)
        for name in FIGURES
    }


def table(decisions: Mapping[str, Decision], counts: Mapping[str, CountVerdict], base: dict, head: dict) -> str:
    """The verdicts as a plain-text table, base and head medians beside them."""
    lines = [f"{'figure':<26} {'base':>12} {'head':>12} {'change':>8}  {'interval':<19} verdict"]
    for name, d in decisions.items():
        interval = f"[{d.low:+.1%}, {d.high:+.1%}]"
        lines.append(
            f"{name:<26} {base[name]:>12,.4g} {head[name]:>12,.4g} {d.change:>+8.1%}  {interval:<19} {d.verdict}"
        )
    for name, c in counts.items():
        lines.append(f"{name:<26} {c.base[0]:>12,} {c.head[0]:>12,} {'':>8}  {'(exact count)':<19} {c.verdict}")
    return "\n".join(lines)


def as_json(decisions: Mapping[str, Decision], counts: Mapping[str, CountVerdict]) -> dict:
    return {
        "verdicts": {
            "figures": {name: asdict(d) for name, d in decisions.items()},
            "counts": {name: asdict(c) for name, c in counts.items()},
        }
    }
