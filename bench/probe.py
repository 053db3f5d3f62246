"""One measurement of the gated Continuous-Sampling figures, in a fresh process, of the library in one tree.

    python -m bench.probe --tree /path/to/checkout --out probe.json [--proxies true]   # one process, every figure
    python -m bench.probe --tree /path/to/checkout --serve true     # one measurement per command on stdin

One arm of one round of an A/B comparison, in a fresh process of the same virtual environment. In serve mode the
process builds and warms up once, then answers `data` (one data-path round), `step` (one training step), `energy`
and `counts`, one REPLY-marked JSON line each, so that bench.ab can interleave the arms step by step: on a shared
machine the time a step takes drifts by several percent within seconds, and measurements a second apart share the
drift. The measuring code is this file, the caller's; the library measured is the one in `--tree` (its mlvgm/ and
kernels/, imported ahead of the installed checkout), as asv runs one benchmark suite against two commits.

What it measures, at bench_sources' CI batch on its `cs` member (the source
`python -m mlvgm.train --preset shapes-ml-random --optimizer adam` builds, on the path `--cs_compile auto` picks):

- `cs_images_per_s`        pairs per second the CS source delivers as two views (higher is better)
- `cs_epoch_time_s`        the SimCLR training step fed by CS, times the steps of an ImageNet-100 epoch (lower)
- `cs_co2_g_per_1k_images` codecarbon's offline estimate over the timed training steps, per 1,000 training
                           images (lower); with its method in words
- with --proxies, counts that do not move with the machine's speed: the compiled CS batch's top-level ops outside
  compiled graphs and the training step's FLOPs (the matmuls and convolutions torch's profiler counts)

Its arguments are checked by its caller: it parses them before mlvgm may be imported, so without mlvgm.config.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# the measured tree's library is imported through this hook: nothing of mlvgm may be imported above it

DATA_ROUNDS, DATA_WARMUP, IMAGES_PER_ROUND = 7, 3, 512  # data path: median of rounds of >= 512 pairs
STEP_ROUNDS, STEP_WARMUP = 6, 2  # training step: median of single steps, after the warm-up
# the timed figures, each with whether higher is better, and the counts (lower is better), as the docstring says
FIGURES = {"cs_images_per_s": True, "cs_epoch_time_s": False, "cs_co2_g_per_1k_images": False}
COUNTS = ("cs_ops_outside_graphs", "train_step_flops")


class _TreeKernels(importlib.abc.MetaPathFinder):
    """Finds `mlvgm.kernels` in the tree's top-level kernels/ (pyproject maps it there), ahead of the editable
    install's finder, which would give the installed checkout's kernels to every tree."""

    def __init__(self, kernels: Path) -> None:
        self.kernels = kernels

    def find_spec(self, name, path, target=None):
        if name != "mlvgm.kernels":
            return None  # its submodules are found on the package's __path__, the tree's kernels/
        init = self.kernels / "__init__.py"
        return importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(self.kernels)])


def use_tree(tree: Path) -> None:
    """Import mlvgm (and mlvgm.kernels) from `tree` in this process; fails loudly if another copy is loaded."""
    tree = tree.resolve()
    if "mlvgm" in sys.modules:
        raise RuntimeError("mlvgm was imported before use_tree: the probe would measure the wrong tree")
    sys.path.insert(0, str(tree))
    sys.meta_path.insert(0, _TreeKernels(tree / "kernels"))
    import mlvgm
    import mlvgm.kernels

    for module in (mlvgm, mlvgm.kernels):
        if not Path(module.__file__).resolve().is_relative_to(tree):
            raise RuntimeError(f"{module.__name__} came from {module.__file__}, not from the tree {tree}")


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


class Probe:
    """One process's measuring session of the tree's library: built and warmed up once, then asked for one
    measurement at a time, so that a driver can interleave the arms of an A/B comparison chunk by chunk."""

    def __init__(self) -> None:
        import torch

        from bench.bench_sources import (
            CI_BATCH,
            DEVICE,
            EPOCH_IMAGES,
            TRAIN_CROP,
            VIEW_CROP,
            _threads,
            make_source,
            train_step_for,
        )
        from mlvgm.data.sources import steps_for
        from mlvgm.hostmem import retain_freed_memory

        torch.set_num_threads(_threads())
        retain_freed_memory()  # what mlvgm.train does on a CPU
        self.batch = CI_BATCH
        self.source = make_source("cs", None, self.batch, VIEW_CROP)
        self.batches = self.source.iterate(0)
        self.per_round = max(2, IMAGES_PER_ROUND // self.batch)
        for _ in range(DATA_WARMUP):
            next(self.batches)
        self.fed = make_source("cs", None, self.batch, TRAIN_CROP).iterate(0)
        self.train_step = train_step_for(self.batch)
        for _ in range(STEP_WARMUP):
            self.train_step(*next(self.fed))
        self.meta = {
            "cs_path": self.source.path.line(),
            "batch": self.batch,
            "threads": torch.get_num_threads(),
            "device": DEVICE.type,
            "torch": torch.__version__,
            "steps_per_epoch": steps_for(EPOCH_IMAGES, self.batch),
        }

    def data_round(self) -> float:
        """Pairs per second over one round of IMAGES_PER_ROUND pairs."""
        from bench.bench_sources import _sync

        _sync()
        start = time.perf_counter()
        for _ in range(self.per_round):
            next(self.batches)
        _sync()
        return self.per_round * self.batch / (time.perf_counter() - start)

    def step(self) -> float:
        """Seconds of one training step fed by CS."""
        from bench.bench_sources import _sync

        start = time.perf_counter()
        self.train_step(*next(self.fed))
        _sync()
        return time.perf_counter() - start

    def energy(self) -> dict:
        """codecarbon's estimate over STEP_ROUNDS training steps, per 1,000 training images, with its method."""
        from bench.carbon import EnergyMeter

        with EnergyMeter() as meter:
            for _ in range(STEP_ROUNDS):
                self.step()
        emissions = meter.record.get("emissions_kg")
        per_1k = None if emissions is None else emissions * 1e3 / (STEP_ROUNDS * self.batch) * 1e3
        return {"cs_co2_g_per_1k_images": per_1k, "co2_method": meter.record.get("method")}

    def counts(self) -> dict:
        """Counts that do not move with the machine's speed."""
        from torch.profiler import ProfilerActivity, profile

        from bench.bench_cs_step import ops_outside_graphs

        ops = ops_outside_graphs(self.source, 10_000)
        inputs = next(self.fed)
        # the profiler's FLOPs rather than FlopCounterMode, a dispatch mode the step's compiled InfoNCE cannot run under
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            self.train_step(*inputs)
        return {
            "cs_ops_outside_graphs": int(ops),
            "train_step_flops": int(sum(e.flops or 0 for e in prof.events())),
        }

    def close(self) -> None:
        self.batches.close()
        self.fed.close()


def figures(rates: Sequence[float], step_seconds: Sequence[float], energy: dict, steps_per_epoch: int) -> dict:
    """The gated figures of one arm in one round, from its measurements (medians of the rounds and steps)."""
    return {
        "cs_images_per_s": _median(rates),
        "cs_epoch_time_s": _median(step_seconds) * steps_per_epoch,
        "cs_co2_g_per_1k_images": energy.get("cs_co2_g_per_1k_images"),
    }


def run_once(proxies: bool) -> dict:
    """The one-shot measurement: every figure from this process alone."""
    probe = Probe()
    rates = [probe.data_round() for _ in range(DATA_ROUNDS)]
    times = [probe.step() for _ in range(STEP_ROUNDS)]
    energy = probe.energy()
    counts = probe.counts() if proxies else {}
    probe.close()
    return {
        "figures": figures(rates, times, energy, probe.meta["steps_per_epoch"]),
        "counts": counts,
        "co2_method": energy["co2_method"],
        **probe.meta,
        "rates": rates,
        "step_times_s": times,
    }


REPLY = "bench.probe> "  # marks the serve mode's replies on stdout, where torch and mlvgm may print too


def serve(stdin=sys.stdin, stdout=sys.stdout, make: type = Probe) -> None:
    """Answer one command per line (data, step, energy, counts, quit) with one REPLY-marked JSON line."""

    def reply(obj: dict) -> None:
        stdout.write(REPLY + json.dumps(obj) + "\n")
        stdout.flush()

    probe = make()
    reply({"ready": True, **probe.meta, "pid": os.getpid()})
    commands = {
        "data": lambda: {"rate": probe.data_round()},
        "step": lambda: {"seconds": probe.step()},
        "energy": probe.energy,
        "counts": lambda: {"counts": probe.counts()},
    }
    for line in stdin:
        command = line.strip()
        if command == "quit":
            break
        if command not in commands:
            reply({"error": f"unknown command {command!r}: one of {', '.join(commands)}, quit"})
            continue
        reply(commands[command]())
    probe.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options = dict(zip(args[::2], args[1::2], strict=False))
    once = {"--tree", "--out"} <= set(options) <= {"--tree", "--out", "--proxies"}
    served = set(options) == {"--tree", "--serve"} and options["--serve"] == "true"
    if len(args) % 2 or not (once or served):
        print("python -m bench.probe: error: give --tree DIR --out FILE [--proxies true|false], or --tree DIR "
              "--serve true", file=sys.stderr)  # fmt: skip
        return 2
    tree = Path(options["--tree"])
    use_tree(tree)
    if served:
        serve()
        return 0
    result = run_once(options.get("--proxies", "false") == "true")
    result["tree"] = str(tree.resolve())
    result["pid"] = os.getpid()
    Path(options["--out"]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
