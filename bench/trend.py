"""The history's trend plot: images/s, epoch time and CO2 per 1,000 training images, per commit and machine.

One panel per quantity, commits in date order along x (short SHAs as labels). Solid lines with filled markers
are the A/B gate's figures (`bench.probe`, the head arm's median); thin dashed lines are the per-source figures of
bench_sources' CI subset; hollow markers are backfilled records; a red ring marks a figure the A/B gate called a
regression. Each machine has its own marker shape: compare points only within one machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.history import Record, verdicts
from mlvgm.io import atomic_path

# (panel title, gated figure, per-source key)
PANELS = (
    ("images/s (higher is better)", "cs_images_per_s", "images_per_s"),
    ("epoch time, s (lower is better)", "cs_epoch_time_s", "epoch_time_s"),
    ("g CO2 per 1,000 training images (lower is better)", "cs_co2_g_per_1k_images", "co2_g_per_1k_images"),
)
GATED = "CS, A/B gate (probe)"
# bench_sources members drawn, with their colours; the others (BigBiGAN, the eager step) are off the scale of
# these and stay in the records and the report
SOURCES = {"cs": "C0", "imagefolder": "C1", "dali": "C2", "ffcv": "C3", "resident": "C7"}
MARKERS = "osD^vP*X"


def has_points(record: Record) -> bool:
    """Whether the plot draws anything of `record` (backfilled CS-step-only records it does not)."""
    gated = (record.data.get("gated") or {}).get("figures") or {}
    drawn = [record.data["sources"].get(s) or {} for s in SOURCES]
    return any(gated.get(g) is not None or any(d.get(k) is not None for d in drawn) for _, g, k in PANELS)


def plot(records: Sequence[Record], out: Path) -> None:
    """Draw the records that have points (see has_points) into `out`, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in records if has_points(r)]
    commits = list(dict.fromkeys(r.commit for r in records))  # date order, as read_history sorts them
    x_of = {c: i for i, c in enumerate(commits)}
    machines = list(dict.fromkeys(r.machine for r in records))
    sources = [s for s in SOURCES if any(s in r.data["sources"] for r in records)]
    colours = {GATED: "C0", **{s: SOURCES[s] for s in sources}}
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(max(7.0, 0.5 * len(commits) + 4), 10), sharex=True)
    for ax, (title, gated_name, key) in zip(axes, PANELS, strict=True):
        for m, machine in enumerate(machines):
            mine = [r for r in records if r.machine == machine]
            marker = MARKERS[m % len(MARKERS)]
            series = [(GATED, r, ((r.data.get("gated") or {}).get("figures") or {}).get(gated_name)) for r in mine]
            series += [(s, r, (r.data["sources"].get(s) or {}).get(key)) for r in mine for s in sources]
            for name in dict.fromkeys(n for n, _, v in series if v is not None):
                points = [(x_of[r.commit], v, r) for n, r, v in series if n == name and v is not None]
                gated = name == GATED
                xs, ys = [p[0] for p in points], [p[1] for p in points]
                ax.plot(xs, ys, color=colours[name], lw=2 if gated else 0.8, ls="-" if gated else "--", alpha=0.9)
                for x, y, r in points:
                    hollow = r.origin == "backfilled"
                    ax.plot(
                        x,
                        y,
                        marker=marker,
                        ms=7 if gated else 5,
                        color=colours[name],
                        mfc="none" if hollow else colours[name],
                        ls="none",
                    )
                    if gated and verdicts(r).get(gated_name) == "regression":
                        ax.plot(x, y, marker="o", ms=16, mfc="none", mec="red", mew=2, ls="none")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[-1].set_xticks(range(len(commits)), [c[:7] for c in commits], rotation=60, fontsize=8)
    handles = [
        plt.Line2D(
            [],
            [],
            color=colours[n],
            lw=2 if n == GATED else 0.8,
            ls="-" if n == GATED else "--",
            label=n if n == GATED else f"{n} (bench_sources, batch 32)",
        )
        for n in colours
    ]
    handles += [
        plt.Line2D([], [], color="grey", marker=MARKERS[m % len(MARKERS)], ls="none", label=machine)
        for m, machine in enumerate(machines)
    ]
    handles += [
        plt.Line2D([], [], color="grey", marker="o", mfc="none", ls="none", label="backfilled record"),
        plt.Line2D([], [], color="red", marker="o", ms=12, mfc="none", mew=2, ls="none", label="A/B regression"),
    ]
    fig.legend(handles=handles, loc="upper center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    with atomic_path(out) as tmp:  # a failed save leaves the old figure whole
        fig.savefig(tmp, dpi=110, format=out.suffix.lstrip("."))
    plt.close(fig)
