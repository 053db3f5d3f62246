"""The paper's Figure 4 for a generator: rows are anchors, and each column adds the *same* noise vector w
to one level (or group) at a time, with the amplified pixel difference to the anchor underneath.
`python -m mlvgm.grid` (its command line) draws it with `draw_view_grid`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from mlvgm.cli import resolve_device
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.base import level_label, resolve_levels, sample_anchors
from mlvgm.io import atomic_write_json
from mlvgm.latents import truncated_normal
from mlvgm.plots import view_grid
from mlvgm.provenance import provenance, provenance_line
from mlvgm.streams import Stream


@dataclass
class ViewGrid:
    """images[r, c]: anchor r with the noise added to column c's levels (column 0: the anchor itself)."""

    images: Tensor  # (rows, 1 + columns, 3, H, W)
    labels: list[str]  # column titles, "anchor" first
    max_abs_diff: Tensor  # (rows, 1 + columns): max |view - anchor| over pixels


@torch.no_grad()
def level_sweep(
    g,
    anchors: Sequence[Tensor],  # per level (rows, d_i)
    w: Tensor,  # (d,) one noise vector, added to each level of a column (a level of size d_i < d takes w[:d_i])
    columns: Sequence[int | str] | None = None,  # levels or groups, one per column; None = every level
) -> ViewGrid:
    """Render the paper's Figure 4: each column adds the same w to one level (or every level of a group).

    Levels of unequal size (a hierarchical VAE's, whose latents grow with resolution) take the leading
    coordinates of one long w: every column then sees the same draw, per coordinate."""
    if columns is None:
        columns = [i + 1 for i in range(len(g.level_dims))]
    anchor_images = g(list(anchors))
    images, labels = [anchor_images], ["anchor"]
    for column in columns:
        levels = resolve_levels(g, column)
        latents = [z.clone() for z in anchors]
        for i in levels:
            if g.level_dims[i] > w.numel():
                raise InputError(
                    f"the noise vector has {w.numel()} dims but level {level_label(g, i)} has {g.level_dims[i]}: "
                    "draw it at least as long as the largest level swept"
                )
            latents[i] = latents[i] + w[: g.level_dims[i]].to(latents[i])
        images.append(g(latents))
        labels.append(level_label(g, levels[0]) if len(levels) == 1 else str(column))
    stacked = torch.stack(images, dim=1)  # (rows, 1 + columns, 3, H, W)
    diff = (stacked - anchor_images[:, None]).abs().flatten(2).amax(dim=2)
    return ViewGrid(stacked, labels, diff)


def draw_view_grid(args, out: Path) -> ViewGrid:
    """Draw the grid `args` (a mlvgm.grid.GridConfig, already checked) asks for to the PNG `out`, with its
    provenance JSON beside it."""
    device = resolve_device(args.device)
    g = load_generator(args.generator, device=device)
    columns = list(args.levels) or None
    for column in columns or []:
        resolve_levels(g, column)  # fail on a bad level before any work
    record = provenance(dataclasses.asdict(args))
    print(provenance_line(record))

    anchors = sample_anchors(
        g, args.anchors, truncation=args.truncation, generator=Stream(args.seed, purpose="anchors").at(0)
    )
    swept = {i for column in columns or range(1, len(g.level_dims) + 1) for i in resolve_levels(g, column)}
    noise_source = Stream(args.seed, purpose="view-grid").at(0)
    longest = max(g.level_dims[i] for i in swept)
    w = truncated_normal(longest, std=args.sigma, t=args.t, generator=noise_source, device=device)
    grid = level_sweep(g, anchors, w, columns)
    title = f"{args.generator}: the same w ~ N^t(0, {args.sigma:g}, {args.t:g}) added to one level per column"
    view_grid(grid, title, out)

    mean_diff = grid.max_abs_diff.mean(dim=0).tolist()
    record["columns"] = {label: round(v, 6) for label, v in zip(grid.labels, mean_diff, strict=True)}
    record["max_abs_diff"] = grid.max_abs_diff.tolist()
    record["noise_vector"] = w.tolist()
    atomic_write_json(out.with_suffix(".json"), record)
    for label, v in zip(grid.labels[1:], mean_diff[1:], strict=True):
        print(f"  {label:<16} max |view - anchor| = {v:.4f} (mean over {args.anchors} anchors)")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return grid
