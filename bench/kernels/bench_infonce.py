"""InfoNCE forward, backward and forward+backward: the paper's eager SupCon code, our torch reference,
the compiled (cache-blocked) path, and Triton where there is a GPU. N in {256, 1024, 4096, 16384}, D = 128.

Figures to quote are ratios within one N (same run, same machine): bench/kernels/report.py turns the
JSON into results/kernels/*.md. Each benchmark's extra_info holds its useful FLOP/s: 2 M^2 D for the
similarity (M = 2N), 4 M^2 D more for the gradient, whatever an implementation recomputes; the
`matmul-ceiling` group measures this machine's fp32 matmul rate on the same shapes.
"""

from __future__ import annotations

import os

import psutil
import pytest
import torch

from bench.kernels.baselines import paper_supcon
from mlvgm.kernels.infonce import infonce

D = 128
TEMPERATURE = 0.1
SIZES = (256, 1024, 4096, 16384)
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
IMPLS = ("paper", "torch", "compiled", "triton") if DEVICE.type == "cuda" else ("paper", "torch", "compiled")


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def _loss_fn(impl: str):
    if impl == "paper":
        return paper_supcon
    return lambda z_a, z_b, tau: infonce(z_a, z_b, tau, impl=impl)


def _skip_reason(impl: str, n: int) -> str | None:
    m = 2 * n
    if impl in ("paper", "torch"):
        # The eager graphs keep several (2N, 2N) fp32 matrices alive at once (about 6 for the paper's code).
        need = 6 * m * m * 4
        have = (
            torch.cuda.get_device_properties(0).total_memory if DEVICE.type == "cuda" else psutil.virtual_memory().total
        )
        if need > 0.6 * have:
            return f"O(N^2) eager graph needs ~{need / 2**30:.0f} GiB of {have / 2**30:.0f} GiB"
    if DEVICE.type == "cpu" and n == SIZES[-1] and impl != "compiled":
        return "CPU run: only the O(N D)-memory path at the largest N"
    return None


@pytest.fixture(scope="module", autouse=True)
def _threads():
    torch.set_num_threads(len(os.sched_getaffinity(0)))


def _embeddings(n: int):
    g = torch.Generator(device=DEVICE).manual_seed(n)
    z_a = torch.randn(n, D, device=DEVICE, generator=g, requires_grad=True)
    z_b = torch.randn(n, D, device=DEVICE, generator=g, requires_grad=True)
    return z_a, z_b


def _rounds(n: int) -> int:
    return 10 if n <= 1024 else 3 if n <= 4096 else 2


def _record(benchmark, n: int, impl: str, flops: float) -> None:
    benchmark.extra_info.update(n=n, d=D, impl=impl, device=DEVICE.type, threads=torch.get_num_threads())
    benchmark.extra_info["gflops_per_s"] = flops / benchmark.stats.stats.median / 1e9


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("part", ["forward", "backward", "fwd+bwd"])
def test_infonce(benchmark, impl: str, n: int, part: str):
    reason = _skip_reason(impl, n)
    if reason:
        pytest.skip(reason)
    benchmark.group = f"infonce-{part}-N{n}"
    fn = _loss_fn(impl)
    z_a, z_b = _embeddings(n)
    m = 2 * n

    def forward():
        with torch.no_grad():
            out = fn(z_a, z_b, TEMPERATURE)
        _sync()
        return out

    def both():
        fn(z_a, z_b, TEMPERATURE).backward()
        z_a.grad = z_b.grad = None
        _sync()

    def backward(loss):
        loss.backward()
        z_a.grad = z_b.grad = None
        _sync()

    def setup():
        loss = fn(z_a, z_b, TEMPERATURE)
        _sync()
        return (loss,), {}

    if part == "forward":
        benchmark.pedantic(forward, rounds=_rounds(n), warmup_rounds=1)
        flops = 2 * m * m * D
    elif part == "fwd+bwd":
        benchmark.pedantic(both, rounds=_rounds(n), warmup_rounds=1)
        flops = 6 * m * m * D
    else:
        # The compiled path does its gradient work in the forward pass (the loss is a scalar): its
        # backward is a scale, and its forward with grad enabled costs what the others' backward does.
        benchmark.pedantic(backward, setup=setup, rounds=_rounds(n), warmup_rounds=1)
        flops = 4 * m * m * D
    _record(benchmark, n, impl, flops)


@pytest.mark.parametrize("shape", ["(M,D)x(D,M)", "(M,M)x(M,D)"])
def test_matmul_ceiling(benchmark, shape: str):
    """This machine's fp32 matmul rate on InfoNCE's two GEMM shapes at N = 4096 (M = 8192, D = 128)."""
    benchmark.group = "matmul-ceiling"
    m = 8192
    g = torch.Generator(device=DEVICE).manual_seed(0)
    if shape == "(M,D)x(D,M)":
        a, b = torch.randn(m, D, device=DEVICE, generator=g), torch.randn(D, m, device=DEVICE, generator=g)
    else:
        a, b = torch.randn(m, m, device=DEVICE, generator=g), torch.randn(m, D, device=DEVICE, generator=g)

    def mm():
        torch.mm(a, b)
        _sync()

    benchmark.pedantic(mm, rounds=5, warmup_rounds=1)
    benchmark.extra_info.update(device=DEVICE.type, threads=torch.get_num_threads())
    benchmark.extra_info["gflops_per_s"] = 2 * m * m * D / benchmark.stats.stats.median / 1e9


_PEAK_SCRIPT = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from bench.kernels.bench_infonce import _embeddings, _loss_fn, TEMPERATURE
torch.set_num_threads({threads})
z_a, z_b = _embeddings({n})
fn = _loss_fn({impl!r})
fn(z_a[:4], z_b[:4], TEMPERATURE).backward()  # imports, compiles, first allocations: not counted
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
fn(z_a, z_b, TEMPERATURE).backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.parametrize("n", [1024, 4096, 16384])
@pytest.mark.parametrize("impl", ["paper", "torch", "compiled"])
def test_infonce_peak_memory_cpu(benchmark, impl: str, n: int):
    """Peak resident memory a forward+backward adds, measured in a fresh process (ru_maxrss). The time
    this group shows is the subprocess's and means nothing; extra_info["peak_mib"] is the figure."""
    import subprocess
    import sys
    from pathlib import Path

    if DEVICE.type == "cuda":
        pytest.skip("bench/gpu_check.py measures GPU peak memory")
    reason = _skip_reason(impl, n)
    if reason:
        pytest.skip(reason)
    benchmark.group = "infonce-peak-memory"
    root = str(Path(__file__).resolve().parents[2])
    code = _PEAK_SCRIPT.format(root=root, threads=torch.get_num_threads(), n=n, impl=impl)
    out = []

    def run():
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
        out.append(int(done.stdout.split()[-1]))

    benchmark.pedantic(run, rounds=1, warmup_rounds=0)
    benchmark.extra_info.update(n=n, d=D, impl=impl, device="cpu", peak_mib=out[-1] / 1024)  # ru_maxrss: KiB
