"""Pixel augmentations T_x on the device, batched, with per-sample randomness (kornia).

Presets, as in the paper's configurations (and SimCLR's):

    simclr     random resized crop (scale 0.2-1), horizontal flip, colour jitter (0.4, 0.4, 0.4, 0.1)
               with p 0.8, grayscale with p 0.2
    no_color   random resized crop + flip (on top of multi-level latent views, which change colours)
    no_crop    flip + colour jitter + grayscale, centre crop only
    none       centre crop only

then ImageNet mean/std normalisation. Randomness is keyed like everything else: the parameters for a
batch come from a torch seed drawn from the (seed, rank, step, "augment") stream, inside a forked RNG,
so a step's augmentations are the same on every rerun and resume and never touch the global RNG.

Measured on 2 CPU cores, 256 images of 64 px: the simclr preset takes 90 ms, no_color 19 ms, against
about 1 s for a ResNet-18 training step on the same batch: kornia is not the bottleneck, so we use it
rather than writing our own.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import Tensor, nn

from mlvgm.errors import InputError
from mlvgm.streams import Draws

PRESETS = ("simclr", "no_color", "no_crop", "none")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _ops(preset: str, size: int) -> list[nn.Module]:
    crop = [K.RandomResizedCrop((size, size), scale=(0.2, 1.0))]
    center = [K.CenterCrop((size, size))]
    flip = [K.RandomHorizontalFlip()]
    color = [K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2)]
    return {
        "simclr": crop + flip + color,
        "no_color": crop + flip,
        "no_crop": center + flip + color,
        "none": center,
    }[preset]


class PixelAugment(nn.Module):
    """T_x: (B, 3, H, W) images in [0, 1] -> (B, 3, size, size) augmented and normalised views.

    preset:    one of PRESETS
    size:      output side in pixels (the crop), <= the input side
    normalize: subtract the ImageNet mean and divide by its std at the end
    """

    def __init__(self, preset: str, size: int, *, normalize: bool = True) -> None:
        super().__init__()
        if preset not in PRESETS:
            raise InputError(f"unknown augmentation {preset!r}: choose one of {', '.join(PRESETS)}")
        self.preset, self.size = preset, size
        self.ops = K.AugmentationSequential(*_ops(preset, size))
        self.normalize = K.Normalize(torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)) if normalize else None

    def forward(self, images: Tensor, source: Draws | None = None) -> Tensor:
        """Augment a batch; `source` (one Draws per step) makes the parameters reproducible."""
        if images.shape[-1] < self.size or images.shape[-2] < self.size:
            raise InputError(f"images of {tuple(images.shape[-2:])} px are smaller than the crop {self.size}")
        if source is None:
            out = self.ops(images)
        else:
            low, high = source.uint32(2, "cpu").tolist()  # a 64-bit torch seed for this batch
            devices = [images.device] if images.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(low | (high << 32))
                out = self.ops(images)
        return self.normalize(out) if self.normalize is not None else out
