"""Turn a pytest-benchmark JSON of bench/kernels into the markdown tables results/kernels/ keeps.

pytest bench/kernels --benchmark-json results/kernels/cpu.json
python -m bench.kernels.report results/kernels/cpu.json        # writes results/kernels/cpu.md
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.compare import check_benchmark_json, read_json
from mlvgm.cli import run
from mlvgm.config import option, parse_config
from mlvgm.errors import InputError
from mlvgm.io import atomic_write_text, check_output_dir


def _by_group(benchmarks: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for b in benchmarks:
        groups.setdefault(b.get("group") or b["name"], []).append(b)
    return groups


def _median_ms(b: dict) -> float:
    return b["stats"]["median"] * 1e3


def _spread(b: dict) -> str:
    return f"{b['stats']['min'] * 1e3:.3g}-{b['stats']['max'] * 1e3:.3g}"


def report(data: dict) -> str:
    machine, commit = data.get("machine_info") or {}, data.get("commit_info") or {}
    groups = _by_group(data["benchmarks"])
    ceiling = max((b["extra_info"]["gflops_per_s"] for b in groups.get("matmul-ceiling", [])), default=None)
    lines = [
        "# Kernel benchmarks",
        "",
        f"{machine.get('cpu', {}).get('brand_raw', machine.get('processor', '?'))}, "
        f"{machine.get('cpu', {}).get('count', '?')} logical CPUs; git {commit.get('id', '?')[:10]}"
        f"{' (dirty)' if commit.get('dirty') else ''}; {data.get('datetime', '')[:19]}.",
        "Medians over rounds (min-max in brackets); ratios against the paper's path in the same run.",
        "",
    ]
    notes = [
        "GFLOP/s counts the plain formula's work, 2 M^2 D per (M, D) x (D, M) product with M = 2N: forward 1,",
        "backward 2, both 3 products. The compiled path does less (one process: only the tiles on and above",
        "the diagonal of the symmetric S, 2 products for forward+backward), so its rate can pass the",
        "ceiling. It accumulates the gradient during a forward pass that has gradients enabled, so its",
        "`backward` row is only the final scaling; compare `fwd+bwd`. Its `forward` row runs without gradients.",
        "",
    ]
    if ceiling:
        shapes = ", ".join(f"{b['param']} {b['extra_info']['gflops_per_s']:.0f}" for b in groups["matmul-ceiling"])
        lines += [f"fp32 matmul ceiling (GFLOP/s, N = 4096 shapes): {shapes}; the best is the 100% below.", ""]
    parts = ("fwd+bwd", "forward", "backward")
    infonce = sorted(
        (g for g in groups if g.startswith("infonce-") and g != "infonce-peak-memory"),
        key=lambda g: (parts.index(g.split("-")[1]), int(g.rsplit("N", 1)[1])),
    )
    if infonce:
        lines += ["## InfoNCE, D = 128", "", *notes,
                  "| pass | N | impl | ms (min-max) | x paper | GFLOP/s | % of matmul ceiling |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for g in infonce:
            part, n = g.split("-")[1], int(g.rsplit("N", 1)[1])
            paper = next((b for b in groups[g] if b["extra_info"]["impl"] == "paper"), None)
            for b in sorted(groups[g], key=_median_ms, reverse=True):
                ratio = f"{_median_ms(paper) / _median_ms(b):.2f}x" if paper else "-"
                flops = b["extra_info"]["gflops_per_s"]
                share = f"{100 * flops / ceiling:.0f}%" if ceiling else "-"
                lines.append(f"| {part} | {n} | {b['extra_info']['impl']} | {_median_ms(b):.3g} ({_spread(b)}) | "
                             f"{ratio} | {flops:.0f} | {share} |")  # fmt: skip
        lines.append("")
    if "infonce-peak-memory" in groups:
        lines += ["## InfoNCE peak memory (CPU, forward+backward, D = 128)", "",
                  "Resident memory the call adds, in a fresh process (ru_maxrss).", "",
                  "| N | impl | peak MiB | (2N)^2 fp32 matrix, MiB |", "|---|---|---|---|"]  # fmt: skip
        rows = sorted(groups["infonce-peak-memory"], key=lambda b: (b["extra_info"]["n"], b["extra_info"]["impl"]))
        for b in rows:
            n = b["extra_info"]["n"]
            lines.append(f"| {n} | {b['extra_info']['impl']} | {b['extra_info']['peak_mib']:.0f} | "
                         f"{(2 * n) ** 2 * 4 / 2**20:.0f} |")  # fmt: skip
        lines.append("")
    for g in sorted(g for g in groups if g.startswith("perturb-")):
        lines += [f"## Perturbation {g.removeprefix('perturb-')}", "",
                  "| impl | ms (min-max) | x paper | views/s | GB/s |", "|---|---|---|---|---|"]  # fmt: skip
        paper = next((b for b in groups[g] if b["extra_info"]["impl"] == "paper"), None)
        for b in sorted(groups[g], key=_median_ms, reverse=True):
            ratio = f"{_median_ms(paper) / _median_ms(b):.1f}x" if paper else "-"
            views = b["extra_info"].get("views_per_s")
            lines.append(f"| {b['extra_info']['impl']} | {_median_ms(b):.3g} ({_spread(b)}) | {ratio} | "
                         f"{f'{views:,.0f}' if views else '-'} | {b['extra_info']['gb_per_s']:.2f} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    bench_json: str = option(help="pytest-benchmark JSON of bench/kernels; the tables go beside it as .md",
                             positional=True)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    args, _, _ = parse_config(ReportConfig, None, argv, prog="python -m bench.kernels.report",
                              description=__doc__.splitlines()[0])  # fmt: skip
    path = Path(args.bench_json)
    if path.suffix != ".json":
        raise InputError(f"{path} is not a .json file: give the JSON pytest --benchmark-json wrote")
    data = check_benchmark_json(read_json(path, "benchmark JSON"), path, stats=("median", "min", "max"))
    out = path.with_suffix(".md")  # beside the JSON: checked now, so that bad input writes nothing
    if out.is_dir():
        raise InputError(f"{out} is a folder, where the tables would go: move it, or the JSON, elsewhere")
    check_output_dir(path.parent, flag="folder for BENCH_JSON (the tables go beside it)")
    text = report(data)
    atomic_write_text(out, text)
    print(text)


if __name__ == "__main__":
    sys.exit(run(main, "python -m bench.kernels.report"))
