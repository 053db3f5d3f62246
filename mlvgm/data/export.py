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

The implementation is mlvgm.data.exporting; `export_dataset` and `CHUNK` import from here too, loaded on
first use, so the command checks its arguments before torch loads.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mlvgm.cli import run
from mlvgm.config import parse_config
from mlvgm.data.export_config import ExportConfig, check_export
from mlvgm.lazy import lazy_exports

_EXPORTS = {name: "mlvgm.data.exporting" for name in ("CHUNK", "export_dataset", "encode_jpeg", "is_val")}

__all__ = sorted([*_EXPORTS, "ExportConfig", "main"])


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def main(argv: Sequence[str] | None = None) -> Path:
    args, _, _ = parse_config(
        ExportConfig, None, argv, prog="python -m mlvgm.data.export",
        description="Render a generator's images into an ImageFolder of JPEGs (train/val by shape class) "
        "with a CSV of every factor per image.",
    )  # fmt: skip
    check_export(args.out, args.n, val_fraction=args.val_fraction, quality=args.quality, overwrite=args.overwrite)
    from mlvgm.data.exporting import run_export  # torch loads only once the arguments pass

    return run_export(args)


if __name__ == "__main__":
    sys.exit(run(main, "python -m mlvgm.data.export"))
