"""`python -m mlvgm.evaluate --run RUN_DIR`: what a trained encoder learned, by linear probe and kNN.

The backbone is frozen and its features computed once for a labelled train and test set (mlvgm.probes):
- the shapes world: generated images (held-out streams) labelled by each ground-truth factor, one
  probe per factor (shape, position, color, background): which invariances did the views teach?
- an image folder with train/ and val/ subfolders (`--data DIR`, or a run trained on one).
The same numbers for the encoder at its random initialisation (the run's own starting point) stand
beside the trained ones, so a table always shows what training added.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlvgm.cli import run
from mlvgm.config import device_option, option, parse_config
from mlvgm.errors import InputError
from mlvgm.io import check_output_dir
from mlvgm.lazy import lazy_exports
from mlvgm.options import PROBE_VAL_SHARE, PROBE_WEIGHT_DECAYS
from mlvgm.runs import load_run_config

if TYPE_CHECKING:
    import pandas as pd

# evaluate_run(config, backbone, device=...) is the library's evaluation of a run, importable from here as
# before: mlvgm.evaluation holds it and loads torch, so it is imported on first use (PEP 562).
_EXPORTS = ("evaluate_run",)
__all__ = ["EvaluateConfig", "main", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_EXPORTS, "mlvgm.evaluation"))


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    run: str = option(help="run folder written by python -m mlvgm.train")
    data: str = option("", "evaluate on this ImageFolder (train/ and val/) instead of the run's own data")
    device: str = device_option()
    probe_weight_decays: tuple[float, ...] = option(
        PROBE_WEIGHT_DECAYS, "the linear probe's weight decays, one chosen on a validation split (default: the run's)"
    )
    probe_val_share: float = option(PROBE_VAL_SHARE, "share of the probe's train images that chooses the weight decay "
                                    "(default: the run's)")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args, given, _ = parse_config(EvaluateConfig, None, argv, prog="python -m mlvgm.evaluate",
                                  description=__doc__.split("\n\n")[0])  # fmt: skip
    run_dir = Path(args.run)
    changes = {key: given[key] for key in ("probe_weight_decays", "probe_val_share") if key in given}
    if args.data:
        changes.update(source="imagefolder", data=args.data)
    config, _ = load_run_config(run_dir, **changes)
    for name in ("probes.csv", "probes.md"):  # written after the evaluation, so checked before it
        if (run_dir / name).is_dir():
            raise InputError(f"{run_dir / name} is a folder, where the evaluation writes its table: move it away")
    check_output_dir(run_dir, flag="--run (or evaluate a copy of the run in a writable folder)")
    from mlvgm.evaluation import evaluate_saved_run  # the model stack, once the arguments have passed

    return evaluate_saved_run(run_dir, config, data=args.data, device=args.device, command=dataclasses.asdict(args))


if __name__ == "__main__":
    sys.exit(run(main, "python -m mlvgm.evaluate"))
