"""StyleGAN2 and BigBiGAN forward speed: eager, eager channels_last and torch.compile, at batch 64.

On a CPU the networks are reduced-width versions of the published designs (same layers, fewer
channels, 64 px) so that a round takes about a second; on a GPU run the full configurations with
`MLVGM_BENCH_FULL=1`. The figure to quote is compiled against the best eager variant of the same group
(same run, same weights, same latents); absolute images/s are in each benchmark's extra_info.
"""

from __future__ import annotations

import os

import pytest
import torch

from mlvgm.generators.bigbigan import BigBiGAN
from mlvgm.generators.stylegan2 import StyleGAN2
from mlvgm.streams import Stream

BATCH = 64
FULL = os.environ.get("MLVGM_BENCH_FULL") == "1"
CONFIGS = {
    # LSUN Cars config-f is 512 px, channel_base 32768, channel_max 512, z = w = 512.
    "stylegan2": lambda: StyleGAN2(
        z_dim=512 if FULL else 128,
        w_dim=512 if FULL else 128,
        img_resolution=512 if FULL else 64,
        synthesis_kwargs={
            "channel_base": 32768 if FULL else 4096,
            "channel_max": 512 if FULL else 128,
            "conv_clamp": 256,
        },
    ),
    # BigBiGAN_x1: ch 96 at 128 px with attention at 64; reduced: ch 16 at 64 px, attention at 32.
    "bigbigan": lambda: BigBiGAN() if FULL else BigBiGAN(ch=16, resolution=64, attention=32, dim_z=100),
}
if FULL:  # the other published StyleGAN2 size: 256 px (stylegan2-ada-pytorch's paper256: channel_base 16384)
    CONFIGS["stylegan2-256"] = lambda: StyleGAN2(
        z_dim=512, w_dim=512, img_resolution=256,
        synthesis_kwargs={"channel_base": 16384, "channel_max": 512, "conv_clamp": 256},
    )  # fmt: skip
# $MLVGM_BENCH_NETWORKS="stylegan2,bigbigan" times some (bench/gpu_all.sh runs one process per network, so that a
# time limit loses only that network's JSON).
if os.environ.get("MLVGM_BENCH_NETWORKS"):
    CONFIGS = {k: v for k, v in CONFIGS.items() if k in os.environ["MLVGM_BENCH_NETWORKS"].split(",")}
# On CUDA also the compiled forward replayed as a CUDA graph (mode="reduce-overhead": one launch per batch
# instead of one per kernel), compiled under bf16 autocast (what ContinuousSampling(amp=True) runs), and both.
CUDA_VARIANTS = ("compiled-cudagraphs", "compiled-bf16", "compiled-cudagraphs-bf16")
VARIANTS = ("eager", "eager-channels-last", "compiled", *(CUDA_VARIANTS if torch.cuda.is_available() else ()))


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def network(request):
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = CONFIGS[request.param]().eval().requires_grad_(False).to(device)
    latents = g.sample_latents(BATCH, truncation=2.0, generator=Stream(0).at(0))
    return request.param, g, latents


def _runner(g, variant: str):
    if variant == "eager-channels-last":
        return g.to(memory_format=torch.channels_last)
    if variant in ("compiled", "compiled-bf16"):
        return torch.compile(g.to(memory_format=torch.contiguous_format), fullgraph=True, dynamic=False)
    if variant.startswith("compiled-cudagraphs"):
        return torch.compile(g.to(memory_format=torch.contiguous_format), fullgraph=True, dynamic=False,
                             mode="reduce-overhead")  # fmt: skip
    return g.to(memory_format=torch.contiguous_format)


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward(benchmark, network, variant):
    name, g, latents = network
    benchmark.group = f"{name}-forward-batch{BATCH}-{'full' if FULL else 'reduced'}"
    run = _runner(g, variant)
    sync = torch.cuda.synchronize if latents[0].is_cuda else (lambda: None)

    def forward():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=variant.endswith("-bf16")):
            out = run(latents)
        sync()  # CUDA runs asynchronously: time the work, not the launch
        return out

    with torch.inference_mode():
        forward()  # compile (or first-call allocations, CUDA graph recording) outside the timed rounds
        benchmark.pedantic(forward, rounds=5, warmup_rounds=2)
    benchmark.extra_info["images_per_s"] = BATCH / benchmark.stats.stats.median
    benchmark.extra_info["threads"] = torch.get_num_threads()
    benchmark.extra_info["resolution"] = g.resolution
