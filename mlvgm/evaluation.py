"""The evaluation of a run (`python -m mlvgm.evaluate` and the end of a training run): the linear-probe and
kNN tables of its trained backbone beside the same network at the run's initialisation (mlvgm.probes). The
command's front (mlvgm.evaluate) checks the arguments before this module loads torch.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from mlvgm.checkpoint import load_checkpoint
from mlvgm.cli import resolve_device
from mlvgm.data.sources import check_images, image_dirs
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.base import labelled
from mlvgm.io import atomic_write_text
from mlvgm.probes import evaluate_backbones, folder_probe_set, generated_probe_set, probes_markdown
from mlvgm.provenance import provenance, provenance_line
from mlvgm.recipe import build_method, initial_backbone, spec
from mlvgm.train_config import TrainConfig

_log = logging.getLogger("mlvgm.evaluate")  # the command's name: its lines are the command's, as before the move


def evaluate_run(
    config: TrainConfig,
    backbone: nn.Module | None,
    *,
    device,
    progress: bool = True,
    encoders: tuple[str, ...] = ("trained", "random init"),
) -> pd.DataFrame:
    """Probe tables of a run's trained backbone and of the same network at the run's initialisation (the
    `encoders` asked for: an experiment probes each seed's initialisation once, not beside every run): on the
    generator's ground-truth factors, or on config.data's train/ and val/ for an image-folder run."""
    backbones = {name: backbone if name == "trained" else initial_backbone(config, device) for name in encoders}
    probe = {"weight_decays": config.probe_weight_decays, "val_share": config.probe_val_share}
    if config.source == "imagefolder":
        root = Path(config.data)
        train_x, train_y, count = folder_probe_set(root, "train", size=config.crop)  # 0: the images' own size
        test_x, test_y, _ = folder_probe_set(root, "val", size=train_x.shape[-1])
        return evaluate_backbones(backbones, (train_x, train_y), (test_x, test_y), {"class": count}, device=device,
                                  progress=progress, **probe)  # fmt: skip
    g = load_generator(spec(config), device=device)
    if not labelled(g):
        raise InputError(f"{config.generator} has no labels to probe: evaluate on an image folder with --data")
    size = config.crop or g.resolution
    common = {"seed": config.seed, "size": size, "truncation": config.truncation, "device": device}
    _log.info(f"rendering {config.eval_train:,} + {config.eval_test:,} labelled images of {config.generator}")
    train = generated_probe_set(g, config.eval_train, purpose="eval-train", **common)
    test = generated_probe_set(g, config.eval_test, purpose="eval-test", **common)
    return evaluate_backbones(backbones, train, test, dict(g.factor_classes), device=device, seed=config.seed,
                              progress=progress, **probe)  # fmt: skip


def evaluate_saved_run(run_dir: Path, config: TrainConfig, *, data: str, device: str, command: dict) -> pd.DataFrame:
    """Probe the checkpoint in run_dir (built with `config`, the run's own with the command's changes) and
    write probes.csv and probes.md beside it; `command` (the command's arguments) goes into the provenance line."""
    if data:
        # the folder walk training uses: links are followed, each real folder once
        check_images(Path(where) / name for where, names in image_dirs(data) for name in names)
    device = resolve_device(device)
    record = provenance({**command, "run_config": dataclasses.asdict(config)})
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
