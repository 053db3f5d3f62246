"""One measurement of the gated Continuous-Sampling figures, in a fresh process, of the library in one tree.

    python -m bench.probe --tree /path/to/checkout --out probe.json [--proxies true]

One round of one arm of an A/B comparison: run it once per round and arm (base and head interleaved, each in a
fresh process of the same virtual environment). The measuring code is this file, the caller's; the library measured
is the one in
`--tree` (its mlvgm/ and kernels/, imported ahead of the installed checkout), as asv runs one benchmark suite
against two commits. What it measures, at bench_sources' CI batch on its `cs` member (the source
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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Probe:
    tree: Path
    proxies: bool = False

    def run(self) -> dict:
        """The figures of one fresh process, with what they were measured on."""
        import torch

        from bench.bench_sources import (
            CI_BATCH,
            DEVICE,
            EPOCH_IMAGES,
            TRAIN_CROP,
            VIEW_CROP,
            _sync,
            _threads,
            make_source,
            train_step_for,
        )
        from bench.carbon import EnergyMeter
        from mlvgm.data.sources import steps_for
        from mlvgm.hostmem import retain_freed_memory

        torch.set_num_threads(_threads())
        retain_freed_memory()  # what mlvgm.train does on a CPU
        batch = CI_BATCH

        source = make_source("cs", None, batch, VIEW_CROP)
        batches = source.iterate(0)
        per_round = max(2, IMAGES_PER_ROUND // batch)
        for _ in range(DATA_WARMUP):
            next(batches)
        rates = []
        for _ in range(DATA_ROUNDS):
            _sync()
            start = time.perf_counter()
            for _ in range(per_round):
                next(batches)
            _sync()
            rates.append(per_round * batch / (time.perf_counter() - start))
        batches.close()

        fed = make_source("cs", None, batch, TRAIN_CROP).iterate(0)
        train_step = train_step_for(batch)
        for _ in range(STEP_WARMUP):
            train_step(*next(fed))
        _sync()
        times = []
        with EnergyMeter() as meter:
            for _ in range(STEP_ROUNDS):
                start = time.perf_counter()
                train_step(*next(fed))
                _sync()
                times.append(time.perf_counter() - start)
        energy = meter.record
        emissions = energy.get("emissions_kg")
        figures = {
            "cs_images_per_s": _median(rates),
            "cs_epoch_time_s": _median(times) * steps_for(EPOCH_IMAGES, batch),
            "cs_co2_g_per_1k_images": None if emissions is None else emissions * 1e3 / (STEP_ROUNDS * batch) * 1e3,
        }
        counts = self._proxies(source, fed, train_step) if self.proxies else {}
        fed.close()
        return {
            "figures": figures,
            "counts": counts,
            "co2_method": energy.get("method"),
            "cs_path": source.path.line(),
            "batch": batch,
            "threads": torch.get_num_threads(),
            "device": DEVICE.type,
            "torch": torch.__version__,
            "rates": rates,
            "step_times_s": times,
        }

    @staticmethod
    def _proxies(source, fed, train_step) -> dict:
        """Counts that do not move with the machine's speed."""
        from torch.profiler import ProfilerActivity, profile

        from bench.bench_cs_step import ops_outside_graphs

        ops = ops_outside_graphs(source, 10_000)
        inputs = next(fed)
        # the profiler's FLOPs rather than FlopCounterMode, a dispatch mode the step's compiled InfoNCE cannot run under
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            train_step(*inputs)
        return {
            "cs_ops_outside_graphs": int(ops),
            "train_step_flops": int(sum(e.flops or 0 for e in prof.events())),
        }


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options = dict(zip(args[::2], args[1::2], strict=False))
    if len(args) % 2 or not {"--tree", "--out"} <= set(options) or not set(options) <= {"--tree", "--out", "--proxies"}:
        print("python -m bench.probe: error: give --tree DIR --out FILE [--proxies true|false]", file=sys.stderr)
        return 2
    tree, out = Path(options["--tree"]), Path(options["--out"])
    use_tree(tree)
    result = Probe(tree, proxies=options.get("--proxies", "false") == "true").run()
    result["tree"] = str(tree.resolve())
    result["pid"] = os.getpid()
    out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
