"""A run's trained backbone: in Python, and as a torchvision-style weights file for other code.

    backbone = mlvgm.load_backbone("runs/quickstart-...")   # nn.Module in eval mode: images -> (B, F) features
    python -m mlvgm.backbone --run RUN --out resnet18.safetensors   # + resnet18.json: how to build it

The backbone is a torchvision ResNet without its classifier (fc is nn.Identity), built by mlvgm.recipe from the
run's config.json, its weights from the run's checkpoint (mlvgm.checkpoint). The file holds the backbone's
state dict under torchvision.models.resnet18/resnet50's own key names (conv1.weight, layer1.0.bn1.running_mean,
...; no fc.*). The JSON beside it says how to build the network those weights fit: `arch`, `width` (64 is
torchvision's; another width needs mlvgm.encoders.backbone) and `small_stem` (a 3x3 stride-1 conv1 and no
max-pool), with the feature size and the input the network was trained on.

The implementation is mlvgm.backbone_io; `load_backbone`, `read_backbone`, `describe` and `FORMAT` import from
here too, loaded on first use, so the command checks its arguments before torch loads.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlvgm.cli import run
from mlvgm.config import option, parse_config
from mlvgm.io import check_output_file
from mlvgm.lazy import lazy_exports
from mlvgm.runs import load_run_config

_EXPORTS = {name: "mlvgm.backbone_io" for name in ("FORMAT", "load_backbone", "describe", "read_backbone")}

__all__ = sorted([*_EXPORTS, "BackboneConfig", "main"])


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


@dataclass(frozen=True, kw_only=True)
class BackboneConfig:
    run: str = option(help="run folder written by python -m mlvgm.train")
    out: str = option(help="weights file to write (.safetensors); its description goes beside it as .json")


def main(argv: Sequence[str] | None = None) -> Path:
    args, _, _ = parse_config(BackboneConfig, None, argv, prog="python -m mlvgm.backbone",
                              description=__doc__.split("\n\n")[0])  # fmt: skip
    out = check_output_file(args.out, suffixes=(".safetensors",))
    load_run_config(args.run)  # not a run folder: one line before torch loads
    from mlvgm.backbone_io import write_backbone

    meta = write_backbone(args.run, out)
    print(f"{meta['arch']} (width {meta['width']}, small stem {meta['small_stem']}, {meta['features']} features) "
          f"of {args.run} at step {meta['step']}: {out} and {out.with_suffix('.json')}")  # fmt: skip
    return out


if __name__ == "__main__":
    sys.exit(run(main, "python -m mlvgm.backbone"))
