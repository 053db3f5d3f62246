"""The library's shared figures (the zoo's training and judging draw their own VAE plots), with matplotlib's
object API (`Figure`, no pyplot, no global backend switch, so importing mlvgm never changes a user's
matplotlib state), saved atomically as PNG.

    loss_curve(metrics, path, title=..., chance=...)   a training run's loss and learning rate (loss.png)
    walker_dynamics(dynamics, gamma, title, path)      quantification's InfoNCE and ||T(z) - z|| (dynamics.png)
    view_grid(grid, title, path)                       the paper's Figure 4 for a generator (mlvgm.grid)
    error_bars(labels, means, stds, path, ...)         one bar per label, +- std (Table 1 of mlvgm.experiments)
    panels(panels, path, ...)                          bars per label in one panel per quantity, seeds as dots
    calibration_sheet(images, sigmas, title, path)      one level moved by each sigma of a grid (mlvgm.audit)
    audit_curves(sweep, chosen, path, ...)             pixel change and saturation against sigma (mlvgm.audit)
    paired_arms(per_run, analysis, path, ...)          arms paired by seed and the tested differences (miniature)

matplotlib is imported when a figure is drawn, not when mlvgm is.
"""

from __future__ import annotations

from pathlib import Path

from mlvgm.io import atomic_path


def save_png(fig, path: str | Path, *, dpi: int = 110) -> None:
    """Write `fig` to `path` whole or not at all (the temporary name has no .png suffix to infer from)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def loss_curve(metrics, path: str | Path, *, title: str, chance: float | None = None) -> bool:
    """loss (left axis) and learning rate (right) against step from a metrics table (columns step, loss, lr);
    a dotted line at `chance` (InfoNCE of an encoder that tells nothing apart). False when there are no rows."""
    from matplotlib.figure import Figure

    if len(metrics) == 0:
        return False
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(metrics["step"], metrics["loss"], color="tab:blue", label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss", color="tab:blue")
    lr_axis = ax.twinx()
    lr_axis.plot(metrics["step"], metrics["lr"], color="tab:gray", linestyle="--", label="lr")
    lr_axis.set_ylabel("learning rate", color="tab:gray")
    if chance is not None:
        ax.axhline(chance, color="tab:red", linestyle=":", linewidth=1)
        ax.annotate("chance: log(2N - 1)", (metrics["step"].iloc[0], chance), fontsize=7, color="tab:red",
                    xytext=(0, -9), textcoords="offset points")  # fmt: skip
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path)
    return True


def walker_dynamics(dynamics, gamma: float, title: str, path: str | Path) -> None:
    """The paper's Appendix-B figure: smoothed InfoNCE (top) and mean ||T(z) - z|| (bottom, log) against
    samples, one line per unit; `dynamics` has columns unit, samples, infonce_ema, norm."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    for unit, rows in dynamics.groupby("unit", sort=False):
        top.plot(rows["samples"], rows["infonce_ema"], label=unit)
        bottom.plot(rows["samples"], rows["norm"], label=unit)
    top.axhline(gamma, color="black", linestyle="--", linewidth=0.8, label=f"gamma = {gamma:g}")
    top.set_ylabel("InfoNCE (smoothed)")
    bottom.set_ylabel("mean ||T(z) - z||")
    bottom.set_yscale("log")
    bottom.set_xlabel("samples")
    top.legend(fontsize=7, ncol=2)
    top.set_title(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def view_grid(grid, title: str, path: str | Path) -> None:
    """Per anchor, a row of images (anchor, then one column per level) and beneath it |view - anchor|
    (mean over RGB, x4); `grid` is a mlvgm.views.ViewGrid."""
    from matplotlib.figure import Figure

    rows, cols = grid.images.shape[:2]
    fig = Figure(figsize=(1.35 * cols, 1.45 * 2 * rows))
    axes = fig.subplots(2 * rows, cols, squeeze=False)
    images = grid.images.float().cpu()
    for r in range(rows):
        for c in range(cols):
            top, bottom = axes[2 * r, c], axes[2 * r + 1, c]
            top.imshow(images[r, c].permute(1, 2, 0).numpy(), interpolation="nearest")
            diff = (images[r, c] - images[r, 0]).abs().mean(dim=0)
            bottom.imshow((4 * diff).clamp(0, 1).numpy(), cmap="magma", vmin=0, vmax=1, interpolation="nearest")
            bottom.text(0.03, 0.05, f"max {grid.max_abs_diff[r, c]:.3f}", color="white", fontsize=6,
                        transform=bottom.transAxes)  # fmt: skip
            for ax in (top, bottom):
                ax.set_xticks([])
                ax.set_yticks([])
            if r == 0:
                top.set_title(grid.labels[c], fontsize=8)
        axes[2 * r, 0].set_ylabel(f"anchor {r + 1}", fontsize=7)
        axes[2 * r + 1, 0].set_ylabel("|diff| x4", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def error_bars(labels: list[str], means, stds, path: str | Path, *, ylabel: str, title: str, log: bool = False) -> None:
    """One bar per label at its mean, with +- std whiskers (a seed's spread; none drawn where std is NaN);
    log: a logarithmic axis, for values spanning decades (Table 1's mu)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.75 * len(labels)), 3.8))
    ax = fig.subplots()
    whiskers = [0.0 if s != s else s for s in stds]  # NaN (one seed) draws no whisker
    ax.bar(range(len(labels)), list(means), yerr=whiskers, capsize=3, color="tab:blue", alpha=0.8)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def panels(data: dict[str, list[tuple[str, float, float, list[float]]]], path: str | Path, *, ylabel: str, title: str,
           grey: tuple[str, ...] = (), lines: dict[str, float] | None = None) -> None:  # fmt: skip
    """One panel per key of `data` (e.g. a factor), each with a bar per (label, mean, std, values): mean +- std,
    every value as a dot (a seed); labels in `grey` are drawn grey (a baseline), `lines` draws a dashed
    reference per panel (chance)."""
    from matplotlib.figure import Figure

    count = len(data)
    columns = min(count, 2)
    rows = -(-count // columns)
    width = max(4.5, 0.55 * max(len(bars) for bars in data.values()))
    fig = Figure(figsize=(width * columns, 3.4 * rows))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, bars) in zip(axes, data.items(), strict=False):
        x = range(len(bars))
        colors = ["0.6" if label in grey else "tab:blue" for label, *_ in bars]
        whiskers = [0.0 if std != std else std for _, _, std, _ in bars]  # NaN (one seed) draws no whisker
        ax.bar(x, [mean for _, mean, _, _ in bars], yerr=whiskers, capsize=3, color=colors, alpha=0.8)
        for i, (*_, values) in enumerate(bars):
            ax.plot([i] * len(values), values, "k.", markersize=3)
        if lines and name in lines:
            ax.axhline(lines[name], color="tab:red", linestyle="--", linewidth=1, label="chance")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(list(x), [label for label, *_ in bars], fontsize=6, rotation=90)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
    for ax in axes[count:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def calibration_sheet(images, sigmas, title: str, path: str | Path) -> None:
    """The paper's Figure 4 as a calibration sheet: per anchor a row, the anchor and then the same level moved
    by each sigma; `images` is (rows, 1 + len(sigmas), 3, H, W) in [0, 1]."""
    from matplotlib.figure import Figure

    rows, cols = images.shape[:2]
    fig = Figure(figsize=(0.95 * cols + 0.4, 0.95 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    labels = ["anchor", *(f"{s:g}" for s in sigmas)]
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(images[r, c].float().clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(labels[c] if c == 0 else f"sigma {labels[c]}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def audit_curves(sweep, chosen, path: str | Path, *, title: str, margin: float, measurable: float) -> None:
    """Two panels against sigma (log): each level's mean pixel change (`measurable` dotted), and its saturated
    share beyond the anchors' (the rule's `margin` dashed); the chosen sigmas circled."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    change, excess = fig.subplots(1, 2)
    for i, (level, rows) in enumerate(sweep.groupby("level", sort=False)):
        color = f"C{i % 10}"
        change.plot(rows["sigma"], rows["pixel_change"], ".-", color=color, label=level)
        excess.plot(rows["sigma"], 100 * rows["saturated_excess"], ".-", color=color, label=level)
        pick = chosen[(chosen["level"] == level) & chosen["kept"]]
        if len(pick):
            change.plot(pick["sigma"], pick["pixel_change"], "o", color=color, markersize=8, markerfacecolor="none")
            excess.plot(pick["sigma"], 100 * pick["saturated_excess"], "o", color=color, markersize=8,
                        markerfacecolor="none")  # fmt: skip
    change.axhline(measurable, color="0.5", linestyle=":", linewidth=1, label="measurable")
    excess.axhline(100 * margin, color="tab:red", linestyle="--", linewidth=1, label="rule's margin")
    for ax, ylabel in ((change, "mean |positive - anchor|"), (excess, "saturated beyond the anchors' (%)")):
        ax.set_xscale("log")
        ax.set_xlabel("sigma (circles: chosen)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    change.set_yscale("log")
    change.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def paired_arms(per_run, analysis: dict, path: str | Path, *, chance: float, ceiling: float) -> None:
    """Left: shape linear top-1 per arm, each seed a dot joined across arms (the pairing), the untrained network
    grey, chance and the supervised ceiling as lines. Right: each tested difference with its 95% interval."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
    arms = [*analysis["arms"], "init"]
    shape = per_run[(per_run["factor"] == "shape")].pivot_table(index="seed", columns="arm", values="linear_top1")
    shape = shape[[a for a in arms if a in shape]]
    for _, row in shape.iterrows():
        left.plot(range(len(row)), row.values, color="0.75", linewidth=0.8, marker=".", markersize=5)
    left.plot(range(len(shape.columns)), shape.mean().values, "o", color="tab:blue", label="mean")
    left.axhline(chance, color="tab:red", linestyle="--", linewidth=1, label="chance")
    left.axhline(ceiling, color="tab:green", linestyle=":", linewidth=1, label="supervised ceiling")
    left.set_xticks(range(len(shape.columns)), list(shape.columns))
    left.set_ylabel("shape, linear top-1")
    left.set_title("each seed (grey) across arms", fontsize=9)
    left.legend(fontsize=7, loc="center right")
    tested = ([analysis["primary"]] if "primary" in analysis else []) + list(analysis["secondary"])
    tested = [row for row in tested if "mean" in row]
    labels = [f"{row['comparison']} ({row['probe']})" for row in tested]
    for i, row in enumerate(tested):
        right.errorbar(row["mean"], i, xerr=[[row["mean"] - row["low"]], [row["high"] - row["mean"]]], fmt="o",
                       color="tab:blue" if i else "black", capsize=3)  # fmt: skip
    right.axvline(0, color="0.5", linewidth=1)
    right.set_yticks(range(len(tested)), labels, fontsize=7)
    right.invert_yaxis()
    right.set_xlabel("paired difference in shape top-1 (95% CI)")
    right.set_title("primary (black) and secondaries", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)
