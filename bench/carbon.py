"""Energy and CO2 of a block of work, estimated by codecarbon's OfflineEmissionsTracker.

    with EnergyMeter() as meter:
        run_some_steps()
    meter.record  # {"energy_kwh": ..., "emissions_kg": ..., "duration_s": ..., "method": "...", ...}

Only the offline tracker is used: the online one asks a web service where the machine is, and nothing
here may touch the network. The grid's carbon intensity is that of a country's energy mix from
codecarbon's bundled table: `MLVGM_CO2_COUNTRY` (3-letter ISO code, default USA) chooses it. Nothing is
written to disk (no emissions.csv) and no HTTP output is configured, whatever a `.codecarbon.config`
says about outputs.

What the numbers are depends on what codecarbon finds, and `record["method"]` says which it used, in
words: on a Linux machine with readable RAPL counters the CPU energy is measured (for the whole
package, not this process alone); without them, as on most VMs, it is *estimated*: a TDP from
codecarbon's table for the CPU model times this process tree's share of the CPUs' time (tracking mode
"process", children such as DataLoader workers included). RAM power is codecarbon's estimate from the
memory size; a GPU is read from NVML's counters. `cpu_seconds` (user + system time of this process and
its children, from psutil) is recorded beside it: a machine-independent measure of the same work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import psutil

COUNTRY_ENV = "MLVGM_CO2_COUNTRY"
DEFAULT_COUNTRY = "USA"


def _tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live children (workers that exited are lost)."""
    total = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def _tdp_origin(model: str) -> str:
    """Where codecarbon's TDP for `model` comes from: its table of CPU models, or its per-thread default."""
    try:
        from codecarbon.core.cpu import DEFAULT_POWER_PER_CORE, TDP

        # the registry lookup alone: TDP() would also log its fallback warnings again
        known = TDP.__new__(TDP)._get_cpu_power_from_registry(model)
    except (ImportError, AttributeError, LookupError, ValueError, OSError):
        return "source unknown"
    if known is None:
        return f"not in codecarbon's table: its default of {DEFAULT_POWER_PER_CORE} W per thread"
    return "codecarbon's table"


def _describe(tracker, data) -> str:
    """How codecarbon arrived at its numbers, in one line, from what its tracker set up."""
    parts = []
    for hardware in getattr(tracker, "_hardware", []):
        mode = getattr(hardware, "_mode", None)
        if mode is None:  # RAM or GPU: their repr names them
            continue
        tdp = getattr(hardware, "_tdp", None)
        if mode == "cpu_load":
            parts.append(
                f"CPU estimated: TDP {tdp} W ({_tdp_origin(data.cpu_model)}) for '{data.cpu_model}' x the "
                f"process tree's share of {data.cpu_count} CPUs (cpu_load mode, no RAPL)"
            )
        elif mode == "intel_rapl":
            parts.append("CPU measured: RAPL energy counters (whole package, not this process alone)")
        elif mode == "constant":
            parts.append(f"CPU estimated: a constant share of TDP {tdp} W ({_tdp_origin(data.cpu_model)})")
        else:
            parts.append(f"CPU: codecarbon mode {mode}")
    if data.gpu_count:
        parts.append(f"GPU measured: NVML energy of {data.gpu_model} (whole device)")
    parts.append(f"RAM estimated: {data.ram_power:.1f} W from the memory size")
    intensity = 1000.0 * data.emissions / data.energy_consumed if data.energy_consumed else float("nan")
    parts.append(f"grid: {data.country_name} ({data.country_iso_code}) energy mix, {intensity:.0f} g CO2eq/kWh")
    return (
        f"codecarbon {data.codecarbon_version} OfflineEmissionsTracker, tracking_mode={data.tracking_mode}; "
        + "; ".join(parts)
    )


class EnergyMeter:
    """Context manager: codecarbon's offline estimate of the energy and CO2 of the enclosed block.

    country:            3-letter ISO code of the grid (default: $MLVGM_CO2_COUNTRY, else USA)
    measure_power_secs: codecarbon's sampling interval; short, because a benchmark block lasts seconds

    After the block, `record` holds energy_kwh, emissions_kg, duration_s, co2_rate_kg_per_s, the CPU,
    RAM and GPU parts, cpu_seconds, country, and `method`; when codecarbon is missing or its tracker
    fails, the numbers are None and `method` says why (the timed work itself is unaffected).
    """

    def __init__(self, *, country: str | None = None, measure_power_secs: float = 1.0) -> None:
        self.country = country or os.environ.get(COUNTRY_ENV, DEFAULT_COUNTRY)
        self.measure_power_secs = measure_power_secs
        self.record: dict[str, object] = {}
        self._tracker = None

    def __enter__(self) -> EnergyMeter:
        try:
            from codecarbon import OfflineEmissionsTracker
        except ImportError:
            self._tracker = None
        else:
            # The tracker logs a warning about concurrent instances before it reads log_level.
            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            self._tracker = OfflineEmissionsTracker(
                country_iso_code=self.country,
                tracking_mode="process",
                log_level="error",
                measure_power_secs=self.measure_power_secs,
                output_methods=[],  # no emissions.csv, no API, whatever a config file says
                emissions_endpoint=None,
                electricitymaps_api_token=None,
                allow_multiple_runs=True,  # no lock file: meters run one after another in one process
                project_name="mlvgm-bench",
            )
            self._tracker.start()
        self._cpu0, self._t0 = _tree_cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        cpu_seconds = _tree_cpu_seconds() - self._cpu0
        wall = time.perf_counter() - self._t0
        self.record = {"country": self.country, "cpu_seconds": cpu_seconds, "wall_s": wall}
        if self._tracker is None:
            self.record.update(_empty("not measured: codecarbon is not installed (pip install mlvgm[bench])"))
            return
        self._tracker.stop()  # codecarbon swallows its own errors: a failed tracker leaves no data
        data = getattr(self._tracker, "final_emissions_data", None)
        if data is None:
            self.record.update(_empty("not measured: codecarbon's tracker did not start"))
            return
        self.record.update(
            energy_kwh=data.energy_consumed,
            emissions_kg=data.emissions,
            duration_s=data.duration,
            co2_rate_kg_per_s=data.emissions_rate,
            cpu_energy_kwh=data.cpu_energy,
            ram_energy_kwh=data.ram_energy,
            gpu_energy_kwh=data.gpu_energy,
            cpu_power_w=data.cpu_power,
            ram_power_w=data.ram_power,
            gpu_power_w=data.gpu_power,
            cpu_model=data.cpu_model,
            tracking_mode=data.tracking_mode,
            codecarbon_version=data.codecarbon_version,
            method=_describe(self._tracker, data),
        )


def _empty(method: str) -> dict[str, object]:
    keys = ("energy_kwh", "emissions_kg", "duration_s", "co2_rate_kg_per_s")
    return {**dict.fromkeys(keys), "method": method}
