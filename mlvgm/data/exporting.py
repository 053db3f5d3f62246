"""Export a generator's images as a dataset on disk: what `python -m mlvgm.data.export` runs (its docstring
describes the layout) once its arguments pass."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from mlvgm.cli import resolve_device
from mlvgm.data.export_config import ExportConfig, check_export
from mlvgm.data.ffcv import write_split_betons
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.base import labelled
from mlvgm.io import atomic_write_json
from mlvgm.progress import Progress
from mlvgm.provenance import provenance, provenance_line
from mlvgm.streams import Stream

_log = logging.getLogger(__name__)

CHUNK = 256  # images rendered per stream step


def encode_jpeg(images: torch.Tensor, quality: int) -> list[bytes]:
    """(B, 3, H, W) uint8 -> JPEG bytes per image (Pillow's libjpeg-turbo; deterministic)."""
    encoded = []
    for array in images.permute(0, 2, 3, 1).numpy():  # (B, H, W, 3)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
        encoded.append(buffer.getvalue())
    return encoded


def is_val(index: int, val_fraction: float) -> bool:
    """Spread the validation images evenly: image i is in val when floor((i+1) f) > floor(i f)."""
    return int((index + 1) * val_fraction) > int(index * val_fraction)


def export_dataset(
    g,  # a generator with factors() and shape_classes (the shapes world)
    out: str | os.PathLike,  # dataset folder to create; must not exist unless overwrite
    n: int,  # number of images
    *,
    seed: int = 0,  # seed of the latent stream
    truncation: float | None = 2.0,  # anchor truncation, as in the paper's generators
    val_fraction: float = 0.1,  # share of images in val/
    quality: int = 90,  # JPEG quality (1-100)
    overwrite: bool = False,  # replace an existing dataset at `out` (only once the new one is complete)
    spec: str = "",  # the generator spec, for the manifest
    progress: bool | None = None,  # a bar (True), log lines (False); None: a bar on a terminal
) -> Path:
    """Render n images of g into an ImageFolder at `out`; return its path."""
    out = check_export(out, n, val_fraction=val_fraction, quality=quality, overwrite=overwrite)
    if not labelled(g) or not hasattr(g, "shape_classes"):
        raise InputError(f"{type(g).__name__} has no ground-truth factors to label images by: export the shapes world")
    parent = out.parent

    config = {
        "generator": spec or type(g).__name__, "n": n, "seed": seed, "truncation": truncation,
        "val_fraction": val_fraction, "quality": quality, "chunk": CHUNK,
    }  # fmt: skip
    record = provenance(config)
    _log.info(provenance_line(record))
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.", suffix=".partial"))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the dataset gets a folder's usual mode
    try:
        rows = _render(g, staging, n, seed, truncation, val_fraction, quality, progress)
        table = pd.DataFrame(rows)
        table.to_csv(staging / "factors.csv", index=False)
        record["counts"] = {split: int((table["split"] == split).sum()) for split in ("train", "val")}
        record["classes"] = list(g.shape_classes)
        atomic_write_json(staging / "manifest.json", record)
        _move_into_place(staging, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return out


@torch.no_grad()
def _render(g, root: Path, n, seed, truncation, val_fraction, quality, progress) -> list[dict]:
    classes = list(g.shape_classes)
    for split in ("train", "val"):
        for name in classes:
            (root / split / name).mkdir(parents=True)
    stream = Stream(seed, purpose="export")
    rows: list[dict] = []
    bar = Progress(n, desc="export", unit="img", terminal=progress)
    for step in range((n + CHUNK - 1) // CHUNK):
        latents = g.sample_latents(CHUNK, truncation=truncation, generator=stream.at(step))
        count = min(CHUNK, n - step * CHUNK)
        latents = [z[:count] for z in latents]
        images = (g(latents) * 255.0).round().to(torch.uint8).cpu()  # (count, 3, H, W)
        factors = {k: v.cpu().tolist() for k, v in g.factors(latents).items()}
        scene = {k: v.cpu().tolist() for k, v in g.scene(latents).items() if k not in factors}
        encoded = encode_jpeg(images, quality)
        for j, data in enumerate(encoded):
            index = step * CHUNK + j
            split = "val" if is_val(index, val_fraction) else "train"
            label = factors["shape"][j]
            path = Path(split) / classes[label] / f"{index:07d}.jpg"
            (root / path).write_bytes(data)
            row = {"index": index, "split": split, "path": str(path), "label": classes[label]}
            row.update({k: v[j] for k, v in factors.items()})
            row.update({k: round(float(v[j]), 6) for k, v in scene.items()})
            rows.append(row)
        bar.update(count)
    bar.close()
    return rows


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished dataset to `out`; an existing `out` is only removed once the new one is there."""
    if not out.exists():
        os.rename(staging, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    os.rename(out, old / "dataset")
    os.rename(staging, out)
    shutil.rmtree(old)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def run_export(args: ExportConfig) -> Path:
    """The command: export the dataset `args` names (already checked), with FFCV files if asked."""
    g = load_generator(args.generator, device=resolve_device(args.device))
    out = export_dataset(
        g, args.out, args.n, seed=args.seed, truncation=args.truncation, val_fraction=args.val_fraction,
        quality=args.quality, overwrite=args.overwrite, spec=args.generator,
    )  # fmt: skip
    print(f"wrote {args.n} images to {out} (factors.csv, manifest.json)")
    if args.format == "ffcv":
        betons = write_split_betons(out, quality=args.quality, overwrite=args.overwrite)
        print("wrote " + ", ".join(str(path) for path in betons))
    return out
