"""The config of `python -m mlvgm.data.export` and the checks of export_dataset's arguments, without torch
(so the command checks its arguments before torch loads)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mlvgm.config import check_ranges, device_option, option
from mlvgm.errors import InputError, check_positive_int
from mlvgm.io import check_creatable


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
    device: str = device_option()

    def __post_init__(self) -> None:
        check_positive_int("--n", self.n)
        check_ranges(self, positive=("truncation",), nonnegative=("seed",), flag="--")
        if self.format not in ("imagefolder", "ffcv"):
            raise InputError(f"--format must be imagefolder or ffcv, got {self.format!r}")


def check_export(out: str | os.PathLike, n: int, *, val_fraction: float, quality: int, overwrite: bool) -> Path:
    """`out` as a Path, once n images split by val_fraction at JPEG quality `quality` may be exported there."""
    check_positive_int("n", n)
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val fraction must be in [0, 1), got {val_fraction}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise InputError(f"JPEG quality must be an integer from 1 to 100, got {quality!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists: choose a new --out, or pass --overwrite to replace it")
    check_creatable(out.parent)
    return out
