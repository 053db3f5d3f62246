"""Same-run A/B of the gated Continuous-Sampling figures: base and head interleaved, fresh processes, one verdict
per figure.

The base revision is checked out in a scratch `git worktree`; each round starts one `bench.probe --serve` process
per arm (fresh processes of this virtual environment), lets them build and warm up side by side, then asks them in
turn for one data-path round or one training step at a time, the order alternating (base-head, head-base, ...), so
that the drift of a shared machine, several percent within seconds, falls on both arms alike.

Per timed figure the rounds' paired log ratios go to
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
from bench.probe import COUNTS, DATA_ROUNDS, FIGURES, REPLY, figures
from mlvgm.errors import InputError

REPO = Path(__file__).resolve().parent.parent
STEPS = 10  # timed training steps per arm and round, interleaved with the other arms'


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
    def __init__(self, tree: Path, returncode: int | None, stderr: str) -> None:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        self.tree = tree
        self.last_line = lines[-1] if lines else "(no output)"
        super().__init__(f"bench.probe on {tree} exited {returncode}: {self.last_line}")


class Worker:
    """A `bench.probe --serve` process measuring the library in `tree`, its stderr kept in `log`."""

    def __init__(self, tree: Path, log: Path) -> None:
        self.tree, self.log = Path(tree), log
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.probe", "--tree", str(tree), "--serve", "true"],
                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            )  # fmt: skip

    def read(self) -> dict:
        """The next reply (the first is the ready line, after the probe's build and warm-up)."""
        for line in self.proc.stdout:
            if line.startswith(REPLY):
                reply = json.loads(line[len(REPLY) :])
                if "error" in reply:
                    raise RuntimeError(f"bench.probe on {self.tree}: {reply['error']}")
                return reply
        raise ProbeFailed(self.tree, self.proc.wait(), self.log.read_text())

    def ask(self, command: str) -> dict:
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ProbeFailed(self.tree, self.proc.wait(), self.log.read_text()) from None
        return self.read()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def rotated(arms: Sequence[str], index: int) -> list[str]:
    """The arms' order at measurement `index`: rotated by one each time (A B, B A, ... for two arms)."""
    shift = index % len(arms)
    return [*arms[shift:], *arms[:shift]]


def lockstep_round(
    trees: Mapping[str, Path],
    logs: Path,
    *,
    steps: int = STEPS,
    counts: bool = False,
    order: Callable[[Sequence[str], int], list[str]] = rotated,
    start: Callable[[Path, Path], Worker] = Worker,
) -> dict[str, dict]:
    """One round: a fresh probe process per arm, built side by side, then measured in turn, one data-path round
    and one training step at a time, so that each arm's measurements are a second or less from the others'."""
    logs.mkdir(parents=True, exist_ok=True)
    arms = list(trees)
    workers: dict[str, Worker] = {}
    try:
        for arm in arms:
            workers[arm] = start(trees[arm], logs / f"{arm}.log")
        meta = {arm: workers[arm].read() for arm in arms}
        rates: dict[str, list[float]] = {arm: [] for arm in arms}
        times: dict[str, list[float]] = {arm: [] for arm in arms}
        for i in range(DATA_ROUNDS):
            for arm in order(arms, i):
                rates[arm].append(workers[arm].ask("data")["rate"])
        for i in range(steps):
            for arm in order(arms, i):
                times[arm].append(workers[arm].ask("step")["seconds"])
        energy = {arm: workers[arm].ask("energy") for arm in order(arms, 0)}
        measured = {arm: workers[arm].ask("counts")["counts"] if counts else {} for arm in arms}
    finally:
        for worker in workers.values():
            worker.close()
    return {
        arm: {
            "figures": figures(rates[arm], times[arm], energy[arm], meta[arm]["steps_per_epoch"]),
            "counts": measured[arm],
            "co2_method": energy[arm].get("co2_method"),
            **{k: v for k, v in meta[arm].items() if k != "ready"},
            "rates": rates[arm],
            "step_times_s": times[arm],
        }
        for arm in arms
    }


def measure(
    trees: Mapping[str, Path],
    rounds: int,
    workdir: Path,
    *,
    count_rounds: int = 2,
    steps: int = STEPS,
    order: Callable[[Sequence[str], int], list[str]] = rotated,
    progress: Callable[[str], None] = print,
    start: Callable[[Path, Path], Worker] = Worker,
) -> dict[str, list[dict]]:
    """Per arm, its figures in each of `rounds` lockstep rounds (the counts in the first `count_rounds`)."""
    results: dict[str, list[dict]] = {arm: [] for arm in trees}
    for r in range(rounds):
        # the arm that measures first alternates between rounds too
        ordered = {arm: trees[arm] for arm in rotated(list(trees), r)}
        got = lockstep_round(ordered, workdir / f"round-{r}", steps=steps, counts=r < count_rounds, order=order,
                             start=start)  # fmt: skip
        for arm in trees:
            results[arm].append(got[arm])
            shown = ", ".join(f"{name} {got[arm]['figures'].get(name) or 0:,.4g}" for name in FIGURES)
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
