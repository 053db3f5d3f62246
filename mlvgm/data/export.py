"""Export a generator's images as a dataset on disk: the "real data" of loader benchmarks and probes.

    python -m mlvgm.data.export --generator shapes --n 10000 --out data/shapes10k

writes an ImageFolder of JPEGs by class with train/val splits, a CSV of every factor of every image,
and a manifest with the provenance:

    DIR/train/<class>/<index>.jpg   DIR/val/<class>/<index>.jpg
    DIR/factors.csv                 index, split, path, label, the discrete factors, the scene parameters
    DIR/manifest.json               generator, n, seed, counts, provenance
    DIR/train.beton, DIR/val.beton  with --format ffcv: the same splits in FFCV's format (mlvgm.data.ffcv)

Every class has a folder in both splits, so class indices agree between train and val; a tiny export
can leave some empty, which torchvision reads with ImageFolder(root, allow_empty=True).

The dataset is built in a hidden sibling folder and renamed into place at the end, so DIR either
does not exist or is complete: a crash or Ctrl-C never leaves a half-written dataset under DIR.
Image i comes from chunk i // CHUNK of the (seed, purpose="export") latent stream, so a dataset is
reproducible from its seed, byte for byte, whatever the machine's speed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from mlvgm.cli import resolve_device, run
from mlvgm.config import option, parse_config
from mlvgm.data.ffcv import write_split_betons
from mlvgm.errors import InputError, check_positive_int
from mlvgm.generators import load_generator
from mlvgm.io import atomic_write_json, check_creatable
from mlvgm.progress import Progress
from mlvgm.provenance import provenance, provenance_line
from mlvgm.streams import Stream

_log = logging.getLogger("mlvgm.data.export")  # a literal: run as python -m, __name__ is __main__

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
    check_positive_int("n", n)
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val fraction must be in [0, 1), got {val_fraction}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise InputError(f"JPEG quality must be an integer from 1 to 100, got {quality!r}")
    if not hasattr(g, "factors") or not hasattr(g, "shape_classes"):
        raise InputError(f"{type(g).__name__} has no ground-truth factors to label images by: export the shapes world")
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists: choose a new --out, or pass --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    check_creatable(parent)

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


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    out: str = option(help="dataset folder to create (its parents too)")
    n: int = option(help="number of images")
    generator: str = option("shapes", "generator spec (one with ground-truth factors: the shapes world)")
    seed: int = option(0, "seed of the latent stream")
    truncation: float = option(2.0, "anchor truncation t")
    val_fraction: float = option(0.1, "share of images in val/, in [0, 1)")
    quality: int = option(90, "JPEG quality, 1-100")
    overwrite: bool = option(False, "replace an existing dataset at --out (only once the new one is complete)")
    format: str = option("imagefolder", "imagefolder, or ffcv: also write train.beton and val.beton beside it")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")

    def __post_init__(self) -> None:
        check_positive_int("--n", self.n)
        if not self.truncation > 0:
            raise InputError(f"--truncation must be > 0, got {self.truncation}")
        if self.format not in ("imagefolder", "ffcv"):
            raise InputError(f"--format must be imagefolder or ffcv, got {self.format!r}")
        if self.seed < 0:
            raise InputError(f"--seed must be >= 0, got {self.seed}")


def main(argv: Sequence[str] | None = None) -> Path:
    args, _, _ = parse_config(
        ExportConfig, None, argv, prog="python -m mlvgm.data.export",
        description="Render a generator's images into an ImageFolder of JPEGs (train/val by shape class) "
        "with a CSV of every factor per image.",
    )  # fmt: skip
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


if __name__ == "__main__":
    sys.exit(run(main, "python -m mlvgm.data.export"))
