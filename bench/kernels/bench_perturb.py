"""Random views of a whole batch: the paper's path (scipy truncnorm per chunk on the CPU, then copy)
against mlvgm.kernels.perturb: the torch reference, the compiled path and Triton (GPU). BigBiGAN's latent
layout, N = 1024 anchors x 6 levels of 20, levels 2-6 perturbed (the paper's ML random views), and
StyleGAN2's, 16 levels of 512 (w+), at N = 256.

extra_info holds views/s and the achieved bandwidth (anchors read, positives written, norms written);
the `copy-ceiling` group measures a device copy of the same bytes, the most a pass over them can do.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from bench.kernels.baselines import paper_perturb
from mlvgm.kernels.perturb import LevelParams, perturb
from mlvgm.streams import Stream

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
IMPLS = ("paper", "torch", "compiled", "triton") if DEVICE.type == "cuda" else ("paper", "torch", "compiled")
LAYOUTS = {  # name: (batch, level_dims, sigma per level, t)
    "bigbigan-1024x6x20": (1024, (20,) * 6, (0.0, 1.0, 1.0, 1.0, 1.0, 1.0), 2.0),
    "stylegan2-256x16x512": (256, (512,) * 16, (0.2,) * 4 + (0.1,) * 4 + (0.8,) * 8, 1.0),
}


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="module", autouse=True)
def _threads():
    torch.set_num_threads(len(os.sched_getaffinity(0)))


def _bytes(batch: int, dims: tuple[int, ...]) -> int:
    return 4 * (2 * batch * sum(dims) + batch * len(dims))


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("impl", IMPLS)
def test_perturb(benchmark, impl: str, layout: str):
    batch, dims, sigma, t = LAYOUTS[layout]
    benchmark.group = f"perturb-{layout}"
    z = torch.randn(batch, sum(dims), device=DEVICE, generator=torch.Generator(device=DEVICE).manual_seed(0))
    if impl == "paper":
        rng = np.random.default_rng(0)
        z_host_side = z  # the paper's anchors live on the device; the noise is made on the host

        def run():
            paper_perturb(z_host_side, dims, sigma, t, rng)
            _sync()

    else:
        params = LevelParams(dims, mu=(0.0,) * len(dims), sigma=sigma, sigma_max=sigma, t=(t,) * len(dims),
                             p=(1.0,) * len(dims))  # fmt: skip
        stream = Stream(0, purpose="views")
        step = iter(range(1 << 30))

        def run():
            perturb(z, params, stream.at(next(step)), impl=impl)
            _sync()

    benchmark.pedantic(run, rounds=50 if batch * sum(dims) < 1 << 20 else 10, warmup_rounds=3)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(impl=impl, device=DEVICE.type, batch=batch, threads=torch.get_num_threads())
    benchmark.extra_info["views_per_s"] = batch / median
    benchmark.extra_info["gb_per_s"] = _bytes(batch, dims) / median / 1e9


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_copy_ceiling(benchmark, layout: str):
    """A device copy of the anchors' bytes: the floor under any pass that reads and writes them once."""
    batch, dims, _, _ = LAYOUTS[layout]
    benchmark.group = f"perturb-{layout}"
    z = torch.randn(batch, sum(dims), device=DEVICE)
    out = torch.empty_like(z)

    def run():
        out.copy_(z)
        _sync()

    benchmark.pedantic(run, rounds=50, warmup_rounds=3)
    benchmark.extra_info.update(impl="copy", device=DEVICE.type, batch=batch)
    benchmark.extra_info["gb_per_s"] = _bytes(batch, dims) / benchmark.stats.stats.median / 1e9
