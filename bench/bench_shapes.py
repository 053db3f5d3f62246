"""The shapes world as a Continuous-Sampling source: eager vs torch.compile, and the latent streams.

Ratios within a group are the figures to quote (same run, same machine); absolute images/s are in
each benchmark's extra_info. The issue's target: >= 10,000 images/s at 64 px on 2 CPU cores, compiled.
"""

from __future__ import annotations

import os

import pytest
import torch

from mlvgm.generators import load_generator
from mlvgm.streams import Stream

BATCH = 256


@pytest.fixture(scope="module")
def world():
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # all cores this process may use
    g = load_generator("shapes:resolution=64")
    latents = g.sample_latents(BATCH, truncation=2.0, generator=Stream(0).at(0))
    return g, latents


def _record(benchmark, images: int) -> None:
    benchmark.extra_info["images_per_s"] = images / benchmark.stats.stats.median
    benchmark.extra_info["threads"] = torch.get_num_threads()


@pytest.mark.benchmark(group="shapes-render-64px")
def test_render_eager(benchmark, world):
    g, latents = world
    with torch.inference_mode():
        benchmark.pedantic(g, args=(latents,), rounds=10, warmup_rounds=1)
    _record(benchmark, BATCH)


@pytest.mark.benchmark(group="shapes-render-64px")
def test_render_compiled(benchmark, world):
    g, latents = world
    compiled = torch.compile(g, fullgraph=True, dynamic=False)
    with torch.inference_mode():
        compiled(latents)  # compile and warm up outside the timed rounds
        benchmark.pedantic(compiled, args=(latents,), rounds=20, warmup_rounds=2)
    _record(benchmark, BATCH)


@pytest.mark.benchmark(group="anchor-latents")
def test_latents_torch_generator(benchmark, world):
    """Baseline: torch's own generator (mt19937 on CPU) through the same inversion."""
    g, _ = world
    generator = torch.Generator().manual_seed(0)
    benchmark.pedantic(lambda: g.sample_latents(BATCH, truncation=2.0, generator=generator), rounds=50, warmup_rounds=2)
    _record(benchmark, BATCH)


@pytest.mark.benchmark(group="anchor-latents")
def test_latents_philox_stream(benchmark, world):
    """Counter-based Philox in torch ops: the price of (seed, rank, step) reproducibility."""
    g, _ = world
    stream = Stream(0)
    step = iter(range(10**9))
    benchmark.pedantic(
        lambda: g.sample_latents(BATCH, truncation=2.0, generator=stream.at(next(step))), rounds=50, warmup_rounds=2
    )
    _record(benchmark, BATCH)
