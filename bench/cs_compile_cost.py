"""What compiling the Continuous-Sampling step costs and saves on this machine: the data behind the CPU rule
of `--cs_compile auto` (mlvgm.recipe.cs_path).

    python -m bench.cs_compile_cost --out results/bench/cs-compile            # the presets below, 3 repeats
    python -m bench.cs_compile_cost --out DIR --presets quickstart --repeats 1

For each preset, as `python -m mlvgm.train` builds its source (mlvgm.recipe.build_source, the preset's batch,
crop and views), fresh processes time the source's first batch and then BATCHES more, one by one:

- `eager`, `cold`: --cs_compile off and on, each with an empty inductor cache (TORCHINDUCTOR_CACHE_DIR a new
  folder per path): a first run on a machine (the eager path's first batch compiles the small helpers that
  T_z and the Philox stream use on a CPU);
- `eager_cached`, `cached`: the same again with those caches filled: every later run of the same shapes.

From their medians over repeats: the compile's extra cost (first batch, compiled minus eager, cold and cached),
the saving per step (eager minus compiled steady batch), and the steps that repay the compile (cost / saving;
none when the compiled step is not faster). Written to OUT/cs-compile.json and OUT/cs-compile.md; the numbers are this
machine's, so the rule in mlvgm.recipe names the machine they came from.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlvgm.cli import run
from mlvgm.config import check_ranges, option, parse_config
from mlvgm.errors import InputError
from mlvgm.io import atomic_write_json, atomic_write_text, make_output_dir

BATCHES = 20  # steady batches timed after the first
# The experiments' miniature trains the quickstart's network and batch on the shapes world at 32 px; the paper's
# shapes presets render 64 px at batch 256 (bench_sources' `cs` at its CI batch is shapes-ml-random at batch 32).
PRESETS = ("quickstart", "shapes-ml-random", "shapes-synth")


@dataclass(frozen=True)
class CostConfig:
    out: str = option("", "folder for cs-compile.json and cs-compile.md (required)")
    presets: tuple[str, ...] = option(PRESETS, "training presets whose Continuous-Sampling step is timed")
    repeats: int = option(3, "fresh processes per preset and path (medians are reported)")
    batches: int = option(BATCHES, "steady batches timed after the first, per process")
    batch_size: int = option(0, "override every preset's batch (0: each preset's own)")

    def __post_init__(self) -> None:
        check_ranges(self, positive=("repeats", "batches"), nonnegative=("batch_size",), flag="--")


def time_source(preset: str, cs_compile: str, batches: int, batch_size: int) -> dict:
    """In this process: the preset's source built as mlvgm.train builds it; seconds of its first batch and of each
    of `batches` more."""
    import torch

    from mlvgm.config import make_config
    from mlvgm.hostmem import retain_freed_memory
    from mlvgm.recipe import build_source
    from mlvgm.train_config import PRESETS as TRAIN_PRESETS
    from mlvgm.train_config import TrainConfig

    retain_freed_memory()  # what mlvgm.train does on a CPU
    changes = {"cs_compile": cs_compile, **({"batch_size": batch_size} if batch_size else {})}
    config = make_config(TrainConfig, TRAIN_PRESETS, preset, changes)
    source = build_source(config, rank=0, world=1, device=torch.device("cpu"))
    times = []
    for step in range(batches + 1):
        start = time.perf_counter()
        source.batch(step)
        times.append(time.perf_counter() - start)
    return {"first_s": times[0], "steady_s": statistics.median(times[1:]), "batch_size": config.batch_size,
            "mode": source.mode, "threads": torch.get_num_threads()}  # fmt: skip


def _worker(preset: str, cs_compile: str, batches: int, batch_size: int, cache: Path) -> dict:
    """time_source in a fresh process whose inductor cache is `cache`."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    code = (f"import json; from bench.cs_compile_cost import time_source; "
            f"print(json.dumps(time_source({preset!r}, {cs_compile!r}, {batches}, {batch_size})))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"timing {preset} ({cs_compile}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(config: CostConfig) -> list[dict]:
    rows = []
    for preset in config.presets:
        samples: dict[str, list[dict]] = {"eager": [], "cold": [], "eager_cached": [], "cached": []}
        for repeat in range(config.repeats):
            with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
                caches = {"off": Path(cache) / "eager", "on": Path(cache) / "compiled"}  # one per path: both cold
                for path, mode in (("eager", "off"), ("cold", "on"), ("eager_cached", "off"), ("cached", "on")):
                    samples[path].append(_worker(preset, mode, config.batches, config.batch_size, caches[mode]))
                    print(f"{preset} {path} (repeat {repeat + 1}/{config.repeats}): "
                          f"first batch {samples[path][-1]['first_s']:.2f} s, "
                          f"then {1e3 * samples[path][-1]['steady_s']:.1f} ms a batch", flush=True)  # fmt: skip
        rows.append(summarise(preset, samples))
    return rows


def summarise(preset: str, samples: dict[str, list[dict]]) -> dict:
    """Medians over repeats, and the steps that repay the compile: a first run (both paths' caches empty) and a
    later one (both filled)."""
    med = {path: {key: statistics.median(s[key] for s in runs) for key in ("first_s", "steady_s")}
           for path, runs in samples.items()}  # fmt: skip
    eager_step = statistics.median([med["eager"]["steady_s"], med["eager_cached"]["steady_s"]])
    compiled_step = statistics.median([med["cold"]["steady_s"], med["cached"]["steady_s"]])
    saving = eager_step - compiled_step
    row = {"preset": preset, "batch_size": samples["eager"][0]["batch_size"],
           "threads": samples["eager"][0]["threads"], "repeats": len(samples["eager"]),
           "modes": sorted({s["mode"] for runs in samples.values() for s in runs}),
           "eager_step_s": eager_step, "compiled_step_s": compiled_step, "saving_per_step_s": saving,
           "first_batch_s": {path: m["first_s"] for path, m in med.items()}}  # fmt: skip
    for path, eager in (("cold", "eager"), ("cached", "eager_cached")):
        cost = med[path]["first_s"] - med[eager]["first_s"]
        row[f"{path}_compile_s"] = cost
        row[f"{path}_repaid_after_steps"] = max(0, math.ceil(cost / saving)) if saving > 0 else None
    return row


def markdown(rows: list[dict]) -> str:
    head = ("| preset | batch | eager ms/batch | compiled ms/batch | saving ms/step | compile s (cold) | "
            "repaid after (cold) | compile s (cached) | repaid after (cached) |")  # fmt: skip
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        keys = ("cold_repaid_after_steps", "cached_repaid_after_steps")
        repaid = [f"{r[k]:,} steps" if r[k] is not None else "never" for k in keys]
        lines.append(f"| {r['preset']} | {r['batch_size']} | {1e3 * r['eager_step_s']:.1f} | "
                     f"{1e3 * r['compiled_step_s']:.1f} | {1e3 * r['saving_per_step_s']:.1f} | "
                     f"{r['cold_compile_s']:.1f} | {repaid[0]} | {r['cached_compile_s']:.1f} | "
                     f"{repaid[1]} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    config, _, _ = parse_config(CostConfig, {}, argv, prog="python -m bench.cs_compile_cost",
                                description="Time the Continuous-Sampling step eager, compiled cold and compiled "
                                "cached, per training preset, in fresh processes.")  # fmt: skip
    if not config.out:
        raise InputError("--out DIR is required: the folder for cs-compile.json and cs-compile.md")
    from mlvgm.train_config import PRESETS as TRAIN_PRESETS

    unknown = [p for p in config.presets if p not in TRAIN_PRESETS]
    if unknown:
        raise InputError(f"unknown preset {unknown[0]!r}: choose from {', '.join(TRAIN_PRESETS)}")
    out = make_output_dir(config.out, flag="--out")
    rows = measure(config)
    from mlvgm.provenance import provenance

    record = provenance({"presets": list(config.presets), "repeats": config.repeats, "batches": config.batches})
    atomic_write_json(out / "cs-compile.json", {"rows": rows, "provenance": record})
    table = markdown(rows)
    atomic_write_text(out / "cs-compile.md", table + "\n")
    print(table)
    return rows


if __name__ == "__main__":
    sys.exit(run(main, "python -m bench.cs_compile_cost"))
