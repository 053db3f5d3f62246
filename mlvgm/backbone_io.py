"""A run's trained backbone in Python (`load_backbone`), and as a weights file with a JSON of how to build it
(`write_backbone`, `read_backbone`): mlvgm.backbone's command line and its format.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mlvgm.checkpoint import load_checkpoint, read_record
from mlvgm.encoders import ARCHS
from mlvgm.encoders import backbone as build_backbone
from mlvgm.errors import InputError
from mlvgm.io import atomic_path, atomic_write_json, field, read_json
from mlvgm.recipe import build_method
from mlvgm.runs import load_run_config

FORMAT = "mlvgm-backbone/1"


def load_backbone(run: str | Path, *, device: torch.device | str = "cpu") -> nn.Module:
    """The trained backbone of the run folder `run` at its current checkpoint, in eval mode on `device`:
    (B, 3, H, W) images in [0, 1] -> (B, F) features, F = 8 x width (x 4 for ResNet-50)."""
    config, _ = load_run_config(run)
    method = build_method(config)
    load_checkpoint(run, method)
    return method.backbone.to(device).eval()


def describe(run: str | Path) -> dict:
    """How to build the network a run's backbone weights fit (the JSON written beside them)."""
    config, preset = load_run_config(run)
    _, features = build_backbone(config.arch, small_stem=config.small_stem, width=config.width)
    return {
        "format": FORMAT,
        "arch": config.arch,  # torchvision.models.<arch>, fc replaced by nn.Identity
        "width": config.width,  # channels of conv1 and layer1 (torchvision's: 64)
        "small_stem": config.small_stem,  # conv1 3x3 stride 1 padding 1, maxpool nn.Identity
        "features": features,
        "input": {"channels": 3, "range": [0.0, 1.0], "resolution": config.crop or None},
        "build": "mlvgm.encoders.backbone(arch, small_stem=small_stem, width=width)[0]",
        "run": {"method": config.method, "preset": preset, "generator": config.generator, "source": config.source},
    }


def read_backbone(path: str | Path, *, device: torch.device | str = "cpu") -> nn.Module:
    """The network a `python -m mlvgm.backbone` file describes (FILE.json beside FILE.safetensors), with its
    weights, in eval mode on `device`."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    fix = "give a file python -m mlvgm.backbone wrote, with its .json beside it"
    meta = read_json(meta_path, what="backbone description", fix=fix)
    where = str(meta_path)
    arch = field(meta, "arch", str, where=where, fix=fix)
    if arch not in ARCHS:
        raise InputError(f"{where}: arch must be one of {', '.join(ARCHS)}, got {arch!r}: {fix}")
    width = field(meta, "width", int, where=where, fix=fix, low=8, high=256)
    small_stem = field(meta, "small_stem", bool, where=where, fix=fix)
    net, _ = build_backbone(arch, small_stem=small_stem, width=width)
    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 -- safetensors raises its own error types for damaged files
        raise InputError(f"{path} is not a readable safetensors file ({exc}): {fix}") from None
    own = net.state_dict()
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape] + [k for k in state if k not in own]
    if bad:
        raise InputError(f"{path} does not fit the network its JSON describes (first: {bad[0]}): {fix}")
    net.load_state_dict(state)
    return net.to(device).eval()


def write_backbone(run: str | Path, out: Path) -> dict:
    """Write the backbone of the run folder `run` to the .safetensors file `out`, its description beside it
    as .json; return the description."""
    net = load_backbone(run)  # every input is checked before anything is written
    meta = {**describe(run), "step": read_record(run)["step"]}
    state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "arch": meta["arch"]})
    atomic_write_json(out.with_suffix(".json"), meta)
    return meta
