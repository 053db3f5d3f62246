"""GPU validation of the kernels, in one short run: correctness of the Triton kernels against the torch
references (fp32 and bf16), their speed against eager and compiled torch, and peak memory.

    python bench/gpu_check.py --out results/kernels          # on a CUDA machine, a few minutes
    python bench/gpu_check.py --smoke --out /tmp/check        # tiny shapes on CPU (Triton interpreter)

Writes gpu-check.json (every number, with git SHA and hardware) and gpu-check.md (the tables).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if not __import__("torch").cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported: --smoke runs on CPU

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.kernels.baselines import paper_supcon
from mlvgm.cli import run
from mlvgm.config import option, parse_config
from mlvgm.errors import InputError
from mlvgm.io import atomic_write_json, atomic_write_text, check_creatable
from mlvgm.kernels.infonce import infonce
from mlvgm.kernels.perturb import LevelParams, perturb
from mlvgm.provenance import provenance
from mlvgm.streams import Stream

TAU = 0.1


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int) -> float:
    """Median seconds of fn() over `repeats`, after one warm-up call (which also compiles)."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def loss_fn(impl):
    return paper_supcon if impl == "paper" else (lambda a, b, tau: infonce(a, b, tau, impl=impl))


def embeddings(n, d, device, dtype=torch.float32, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    z_a = torch.randn(n, d, device=device, generator=g).to(dtype).requires_grad_()
    z_b = torch.randn(n, d, device=device, generator=g).to(dtype).requires_grad_()
    return z_a, z_b


def value_and_grads(impl, z_a, z_b):
    loss = loss_fn(impl)(z_a, z_b, TAU)
    g_a, g_b = torch.autograd.grad(loss, (z_a, z_b))
    return loss.detach().float(), torch.cat([g_a, g_b]).float()


def check_infonce(sizes, d, device) -> list[dict]:
    rows = []
    for n in sizes:
        for dtype in (torch.float32, torch.bfloat16):
            if dtype == torch.bfloat16 and device.type != "cuda":
                continue
            z_a, z_b = embeddings(n, d, device, dtype)
            ref_a = z_a.detach().float().double().requires_grad_()
            ref_b = z_b.detach().float().double().requires_grad_()
            ref_loss, ref_grad = value_and_grads("torch", ref_a, ref_b)
            loss, grad = value_and_grads("triton", z_a, z_b)
            cos = torch.nn.functional.cosine_similarity(grad.flatten().double(), ref_grad.flatten(), dim=0)
            rows.append({
                "n": n, "d": d, "dtype": str(dtype).removeprefix("torch."),
                "loss": float(loss), "loss_fp64_reference": float(ref_loss),
                "loss_rel_error": abs(float(loss) - float(ref_loss)) / abs(float(ref_loss)),
                "grad_max_abs_error": float((grad.double() - ref_grad).abs().max()),
                "grad_max_abs": float(ref_grad.abs().max()), "grad_cosine": float(cos),
            })  # fmt: skip
            print("infonce check", rows[-1], flush=True)
    return rows


def check_perturb(batch, device) -> dict:
    dims = (20,) * 6
    params = LevelParams(dims, mu=(0.0, 0.5, 0, 0, 0, 0), sigma=(0, 1, 1, 0.5, 2, 0), sigma_max=(0, 1, 1.5, 0.5, 2, 0),
                         t=(2, 2, 1, float("inf"), 2, 2), p=(1, 1, 0.5, 1, 1, 1))  # fmt: skip
    z = torch.randn(batch, sum(dims), generator=torch.Generator().manual_seed(0))
    cpu_pos, cpu_norms = perturb(z, params, Stream(3, rank=1, purpose="views").at(9), impl="compiled")
    pos, norms = perturb(z.to(device), params, Stream(3, rank=1, purpose="views").at(9), impl="triton")
    out = {
        "batch": batch,
        "max_abs_diff_positives_vs_cpu_compiled": float((pos.cpu() - cpu_pos).abs().max()),
        "max_abs_diff_norms_vs_cpu_compiled": float((norms.cpu() - cpu_norms).abs().max()),
    }
    print("perturb check", out, flush=True)
    return out


def time_infonce(sizes, d, device, repeats) -> list[dict]:
    impls = ["paper", "torch", "compiled", "triton"]
    rows = []
    for n in sizes:
        for impl in impls:
            for dtype in (torch.float32, torch.bfloat16):
                if dtype == torch.bfloat16 and (impl != "triton" or device.type != "cuda"):
                    continue
                z_a, z_b = embeddings(n, d, device, dtype)
                fn = loss_fn(impl)

                def step(fn=fn, z_a=z_a, z_b=z_b):
                    fn(z_a, z_b, TAU).backward()
                    z_a.grad = z_b.grad = None

                row = {"n": n, "d": d, "impl": impl, "dtype": str(dtype).removeprefix("torch.")}
                try:
                    row["fwd_bwd_ms"] = 1e3 * timed(step, device, repeats)
                    row["peak_mib"] = peak_mib(step, device)
                except torch.OutOfMemoryError:
                    row["fwd_bwd_ms"] = row["peak_mib"] = None
                    row["note"] = "out of memory"
                torch.cuda.empty_cache() if device.type == "cuda" else None
                rows.append(row)
                print("infonce time", row, flush=True)
    return rows


def peak_mib(fn, device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def time_perturb(device, repeats, batch) -> list[dict]:
    import numpy as np

    from bench.kernels.baselines import paper_perturb

    rows = []
    dims, sigma = (20,) * 6, (0.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    params = LevelParams(dims, mu=(0.0,) * 6, sigma=sigma, sigma_max=sigma, t=(2.0,) * 6, p=(1.0,) * 6)
    z = torch.randn(batch, 120, device=device)
    rng = np.random.default_rng(0)
    stream = Stream(0, purpose="views")
    fns = {"paper": lambda: paper_perturb(z, dims, sigma, 2.0, rng)}
    for impl in ("torch", "compiled", "triton"):
        fns[impl] = lambda impl=impl: perturb(z, params, stream.at(1), impl=impl)
    for impl, fn in fns.items():
        rows.append({"impl": impl, "batch": batch, "ms": 1e3 * timed(fn, device, repeats)})
        print("perturb time", rows[-1], flush=True)
    return rows


def markdown(record) -> str:
    sha, torch_version = record["provenance"]["git"]["sha"][:10], record["provenance"]["software"]["torch"]
    lines = [f"# Kernel check on {record['device']}", "", f"git {sha}, torch {torch_version}", "",
             "## InfoNCE correctness (Triton vs fp64 torch)", "",
             "| N | D | dtype | loss rel. error | max abs grad error (of max grad) | grad cosine |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in record["infonce_check"]:
        lines.append(f"| {r['n']} | {r['d']} | {r['dtype']} | {r['loss_rel_error']:.2e} | "
                     f"{r['grad_max_abs_error']:.2e} ({r['grad_max_abs']:.2e}) | {r['grad_cosine']:.6f} |")  # fmt: skip
    lines += ["", "## InfoNCE forward+backward", "", "| N | impl | dtype | ms | x paper eager | peak MiB |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for r in record["infonce_time"]:
        paper = next((p for p in record["infonce_time"] if p["n"] == r["n"] and p["impl"] == "paper"), None)
        ratio = (paper["fwd_bwd_ms"] / r["fwd_bwd_ms"]) if paper and paper["fwd_bwd_ms"] and r["fwd_bwd_ms"] else None
        ms = f"{r['fwd_bwd_ms']:.3f}" if r["fwd_bwd_ms"] else r.get("note", "-")
        ratio_text = f"{ratio:.2f}x" if ratio else "-"
        peak_text = f"{r['peak_mib']:.0f}" if r["peak_mib"] else "-"
        lines.append(f"| {r['n']} | {r['impl']} | {r['dtype']} | {ms} | {ratio_text} | {peak_text} |")
    batch = record["perturb_time"][0]["batch"]
    lines += ["", f"## Perturbation, {batch} x 6 x 20", "", "| impl | ms | x paper |", "|---|---|---|"]
    paper = next(r for r in record["perturb_time"] if r["impl"] == "paper")
    for r in record["perturb_time"]:
        lines.append(f"| {r['impl']} | {r['ms']:.4f} | {paper['ms'] / r['ms']:.1f}x |")
    p = record["perturb_check"]
    lines += ["", "Triton perturbation vs the CPU compiled path, same stream: max |diff| "
              f"{p['max_abs_diff_positives_vs_cpu_compiled']:.2e} (positives), "
              f"{p['max_abs_diff_norms_vs_cpu_compiled']:.2e} (norms)."]  # fmt: skip
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, kw_only=True)
class GpuCheckConfig:
    out: str = option(help="folder for gpu-check.json and gpu-check.md (created if missing)")
    smoke: bool = option(False, "tiny shapes, to test this script without a GPU")


def main(argv: Sequence[str] | None = None) -> dict:
    args, _, _ = parse_config(GpuCheckConfig, None, argv, prog="python bench/gpu_check.py",
                              description=__doc__.splitlines()[0])  # fmt: skip
    out = check_creatable(args.out)  # before minutes of checks, not after them
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        raise InputError("no CUDA device here: use --smoke to exercise the script on CPU")
    smoke = args.smoke
    record = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (smoke)",
        "provenance": provenance({"smoke": smoke}),
        "infonce_check": check_infonce([3, 33] if smoke else [1000, 4096], 96 if smoke else 128, device),
        "perturb_check": check_perturb(5 if smoke else 1024, device),
        "infonce_time": time_infonce([8] if smoke else [1024, 4096, 16384, 65536], 128, device, 1 if smoke else 10),
        "perturb_time": time_perturb(device, 1 if smoke else 50, 8 if smoke else 1024),
    }
    atomic_write_json(out / "gpu-check.json", record)
    atomic_write_text(out / "gpu-check.md", markdown(record))
    print(markdown(record))
    return record


if __name__ == "__main__":
    sys.exit(run(main, "python bench/gpu_check.py"))
