"""The benchmark history: one JSON record per commit and machine under results/bench/history/.

A record holds what one run measured of one commit:

- `gated`:   the A/B gate's figures of the head arm (medians over its rounds, `bench.probe.FIGURES`), its
             exact counts, and the verdicts against the base it ran against (`bench.track ab`);
- `sources`: per source of a pytest-benchmark run of bench_sources at the CI batch: images/s, epoch time, the
             energy and CO2 per epoch and CO2 per 1,000 training images, with codecarbon's estimation method;
- `origin`:  "ab" for a record written by `bench.track record`, "backfilled" for one read from a benchmark JSON
             committed before the history existed (then `from` names the file and the commit that holds it).

Records are written by a developer (`make bench-record`) and committed: CI cannot commit. A record that is not
JSON, or two records of one commit and machine, is bad input: one line, exit status 2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.probe import FIGURES
from mlvgm.errors import InputError

SCHEMA = 1
HISTORY = Path(__file__).resolve().parent.parent / "results" / "bench" / "history"
CI_BATCH = 32  # bench_sources' CI subset; the batch every record's `sources` is read at


def machine_name(cpu: str, cores: object) -> str:
    """The machine a record is keyed by: the CPU model and the logical CPUs the run could use."""
    return f"{cpu}, {cores} logical CPUs"


def file_name(commit: str, machine: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", machine.lower()).strip("-")
    return f"{commit[:10]}-{slug}.json"


def sources_of(bench: Mapping, batch: int = CI_BATCH) -> dict[str, dict]:
    """Per source, the figures of a pytest-benchmark JSON of bench_sources (and bench_cs_step) at `batch`."""
    sources: dict[str, dict] = {}
    for b in bench.get("benchmarks", []):
        info = b.get("extra_info") or {}
        if "member" in info and info.get("path") in ("compiled", "eager"):  # bench_cs_step: the CS step alone
            sources.setdefault(f"cs-step {info['member']}", {})["images_per_s"] = info["images_per_s"]
            continue
        if info.get("batch") != batch or "source" not in info:
            continue
        entry = sources.setdefault(info["source"], {})
        if "images_per_s" in info and "epoch_time_s" not in info:
            entry["images_per_s"] = info["images_per_s"]
        if "epoch_time_s" in info:
            entry["epoch_time_s"] = info["epoch_time_s"]
            entry["energy_kwh_per_epoch"] = info.get("energy_kwh_per_epoch")
            co2 = info.get("co2_kg_per_epoch")
            entry["co2_g_per_epoch"] = None if co2 is None else co2 * 1e3
            images = info.get("epoch_images")
            entry["co2_g_per_1k_images"] = None if co2 is None or not images else co2 * 1e3 / (images / 1e3)
            entry["co2_method"] = (info.get("energy") or {}).get("method")
    return sources


def bench_machine(bench: Mapping) -> str:
    machine = bench.get("machine_info") or {}
    cpu = machine.get("cpu") or {}
    return machine_name(cpu.get("brand_raw") or machine.get("processor") or "unknown CPU", cpu.get("count", "?"))


@dataclass(frozen=True)
class Record:
    path: Path
    data: dict

    @property
    def commit(self) -> str:
        return self.data["commit"]

    @property
    def machine(self) -> str:
        return self.data["machine"]

    @property
    def origin(self) -> str:
        return self.data["origin"]


REQUIRED = {"schema": int, "commit": str, "commit_date": str, "machine": str, "origin": str, "sources": dict}


def check_record(data: object, path: Path) -> dict:
    if not isinstance(data, dict):
        raise InputError(f"history record {path} is not a JSON object: rewrite it with python -m bench.track record")
    for key, kind in REQUIRED.items():
        if not isinstance(data.get(key), kind):
            raise InputError(
                f"history record {path} lacks {key!r} ({kind.__name__}): rewrite it with "
                "python -m bench.track record, or delete it"
            )
    if data["schema"] != SCHEMA:
        raise InputError(f"history record {path} has schema {data['schema']}, this code reads {SCHEMA}: upgrade it")
    if data["origin"] not in ("ab", "backfilled"):
        raise InputError(f"history record {path} has origin {data['origin']!r}: it must be 'ab' or 'backfilled'")
    return data


def read_history(folder: Path = HISTORY) -> list[Record]:
    """Every record in `folder`, oldest commit first; InputError for a bad file or a duplicate commit+machine."""
    records: list[Record] = []
    seen: dict[tuple[str, str], Path] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"history record {path} is not JSON ({exc}): restore it from git or delete it") from None
        record = Record(path, check_record(data, path))
        key = (record.commit, record.machine)
        if key in seen:
            raise InputError(
                f"two history records for commit {record.commit[:10]} on {record.machine}: {seen[key].name} and "
                f"{path.name}; keep one"
            )
        seen[key] = path
        records.append(record)
    return sorted(records, key=lambda r: (r.data["commit_date"], r.commit))


def verdicts(record: Record) -> dict[str, str]:
    """figure or count -> its A/B verdict, for records the gate wrote."""
    ab = record.data.get("ab") or {}
    found = {name: d["verdict"] for name, d in (ab.get("figures") or {}).items()}
    found.update({name: c["verdict"] for name, c in (ab.get("counts") or {}).items()})
    return found


def _fmt(value: object, spec: str = ",.4g") -> str:
    return "-" if value is None else format(value, spec)


def report(records: Iterable[Record]) -> str:
    """The history as a Markdown table: per record the gated figures with their verdicts and CS's per-source ones."""
    head = ["commit", "date", "machine", "origin", *FIGURES, "regressions", "cs epoch (bench, s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        gated = (r.data.get("gated") or {}).get("figures") or {}
        flagged = [name for name, v in verdicts(r).items() if v == "regression"]
        cs = r.data["sources"].get("cs") or {}
        cells = [
            r.commit[:10],
            r.data["commit_date"][:10],
            r.machine,
            r.origin,
            *(_fmt(gated.get(name)) for name in FIGURES),
            ", ".join(flagged) or ("none" if r.origin == "ab" else "-"),
            _fmt(cs.get("epoch_time_s"), ",.0f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
