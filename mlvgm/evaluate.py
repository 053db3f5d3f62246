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
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torchvision.datasets.folder import IMG_EXTENSIONS

from mlvgm.checkpoint import load_checkpoint
from mlvgm.cli import resolve_device, run
from mlvgm.config import option, parse_config
from mlvgm.data.sources import check_images
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.io import atomic_write_text, check_output_dir
from mlvgm.probes import (
    PROBE_VAL_SHARE,
    PROBE_WEIGHT_DECAYS,
    evaluate_backbones,
    folder_probe_set,
    generated_probe_set,
    probes_markdown,
)
from mlvgm.provenance import provenance, provenance_line
from mlvgm.recipe import TrainConfig, build_method, initial_backbone, spec
from mlvgm.runs import load_run_config

_log = logging.getLogger("mlvgm.evaluate")  # a literal: run as python -m, __name__ is __main__


def evaluate_run(config: TrainConfig, backbone: nn.Module, *, device, progress: bool = True) -> pd.DataFrame:
    """Probe tables of a run's trained backbone and of the same network at the run's initialisation:
    on the generator's ground-truth factors, or on config.data's train/ and val/ for an image-folder run."""
    backbones = {"trained": backbone, "random init": initial_backbone(config, device)}
    probe = {"weight_decays": config.probe_weight_decays, "val_share": config.probe_val_share}
    if config.source == "imagefolder":
        root = Path(config.data)
        train_x, train_y, count = folder_probe_set(root, "train", size=config.crop)  # 0: the images' own size
        test_x, test_y, _ = folder_probe_set(root, "val", size=train_x.shape[-1])
        return evaluate_backbones(backbones, (train_x, train_y), (test_x, test_y), {"class": count}, device=device,
                                  progress=progress, **probe)  # fmt: skip
    g = load_generator(spec(config), device=device)
    if not hasattr(g, "factors"):
        raise InputError(f"{config.generator} has no labels to probe: evaluate on an image folder with --data")
    size = config.crop or g.resolution
    common = {"seed": config.seed, "size": size, "truncation": config.truncation, "device": device}
    _log.info(f"rendering {config.eval_train:,} + {config.eval_test:,} labelled images of {config.generator}")
    train = generated_probe_set(g, config.eval_train, purpose="eval-train", **common)
    test = generated_probe_set(g, config.eval_test, purpose="eval-test", **common)
    return evaluate_backbones(backbones, train, test, dict(g.factor_classes), device=device, seed=config.seed,
                              progress=progress, **probe)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    run: str = option(help="run folder written by python -m mlvgm.train")
    data: str = option("", "evaluate on this ImageFolder (train/ and val/) instead of the run's own data")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
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
    if args.data:
        check_images(p for p in sorted(Path(args.data).rglob("*")) if p.suffix.lower() in IMG_EXTENSIONS)
    device = resolve_device(args.device)
    record = provenance({**dataclasses.asdict(args), "run_config": dataclasses.asdict(config)})
    print(provenance_line(record))
    torch.manual_seed(config.seed)
    method = build_method(config).to(device)
    step = load_checkpoint(run_dir, method)["step"]
    print(f"evaluating {run_dir} at step {step}")
    table = evaluate_run(config, method.backbone, device=device)
    atomic_write_text(run_dir / "probes.csv", table.to_csv(index=False))
    atomic_write_text(run_dir / "probes.md", probes_markdown(table) + "\n")
    print(probes_markdown(table))
    return table


if __name__ == "__main__":
    sys.exit(run(main, "python -m mlvgm.evaluate"))
