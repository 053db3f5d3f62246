"""The Continuous-Sampling step's per-batch cost: the compiled step against the same step called eagerly.

    pytest bench/bench_cs_step.py --benchmark-json out.json          # batch 8 and 256
    pytest bench/bench_cs_step.py -m ci --benchmark-json out.json    # the same (it is the CI subset)
    python -m bench.compare out.json --baseline results/bench/baseline-ci.json

One group, `cs-step`, members `{path}-{batch}`:

- `compiled`: `ContinuousSampling` as `mlvgm.train --cs_compile on` builds it (what `auto` picks on CUDA and for
  long CPU runs): the whole step (anchor draws, T_z, the generator, T_x) one compiled graph, the step a
  tensor input.
- `eager`: the same `produce` called with the step as an int (`--cs_compile off`, what `auto` picks for a
  short CPU run): each op a launch (on a GPU) and a trip through Python; T_z runs its own kernel
  (`--kernels`).

Both make the same views of the shapes world at 64 px (no_color, 56 px views, ML random views on z2-z5),
as bench_sources' `cs` member does. Per member, extra_info holds images/s (pairs per second, as
bench_sources counts them) and the number of top-level ops a batch issues outside compiled graphs
(torch's profiler, one batch after warm-up). bench.compare tracks, as ratios within the run: compiled
against eager at each batch (the time per batch), the compiled step's images/s at batch 8 over batch 256
(1.0 = no fixed cost per batch), and the compiled step's op count.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from bench.bench_sources import CONFIG, DEVICE, RESOLUTION, VIEW_CROP, _sync, _threads
from mlvgm.data.sources import ContinuousSampling
from mlvgm.recipe import continuous_sampling

BATCHES = (8, 256)
WARMUP = 3  # batches before timing: compile, first allocations
IMAGES_PER_MEMBER = 4096  # timed pairs per member: rounds = this / batch, at least MIN_ROUNDS
MIN_ROUNDS = 8


@pytest.fixture(scope="module")
def generator():
    from mlvgm.generators import load_generator

    torch.set_num_threads(_threads())
    return load_generator(f"shapes:resolution={RESOLUTION}", device=DEVICE)


def make(g, batch: int, compiled: bool) -> ContinuousSampling:
    """The source mlvgm.train builds for the bench's preset, with its path forced."""
    config = dataclasses.replace(CONFIG, batch_size=batch, crop=VIEW_CROP, cs_compile="on" if compiled else "off")
    return continuous_sampling(config, g, rank=0, world=1, device=DEVICE)


def ops_outside_graphs(source: ContinuousSampling, step: int) -> int:
    """Top-level aten ops of one batch that no compiled graph contains (what Python issues one by one)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        source.batch(step)
        _sync()
    return sum(1 for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::"))


@pytest.mark.ci
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("path", ["compiled", "eager"])
def test_cs_step(benchmark, generator, path: str, batch: int):
    benchmark.group = "cs-step"
    source = make(generator, batch, compiled=path == "compiled")
    steps = itertools.count()
    for _ in range(WARMUP):
        source.batch(next(steps))
    _sync()
    ops = ops_outside_graphs(source, next(steps))

    def one() -> None:
        source.batch(next(steps))
        _sync()

    benchmark.pedantic(one, rounds=max(MIN_ROUNDS, IMAGES_PER_MEMBER // batch), iterations=1)
    benchmark.extra_info.update(
        member=f"{path}-{batch}", path=path, batch=batch, resolution=RESOLUTION, crop=VIEW_CROP,
        ops_outside_graphs=ops, mode=source.mode, threads=torch.get_num_threads(), device=DEVICE.type,
        images_per_s=batch / benchmark.stats.stats.median,
    )  # fmt: skip
