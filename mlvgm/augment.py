"""Pixel augmentations T_x on the device, batched, with per-sample randomness (fused crop, kornia colour).

Presets, as in the paper's configurations (and SimCLR's):

    simclr     random resized crop (scale 0.2-1), horizontal flip, colour jitter (0.4, 0.4, 0.4, 0.1)
               with p 0.8, grayscale with p 0.2
    no_color   random resized crop + flip (on top of multi-level latent views, which change colours)
    no_crop    flip + colour jitter + grayscale, centre crop only
    none       centre crop only

then ImageNet mean/std normalisation. Randomness is keyed like everything else: the parameters for a
batch come from the Draws the caller passes (the data sources give each view of a pair its own stream,
(seed, rank, step, "augment-view1" / "augment-view2")), and kornia's own ops from a torch seed drawn
from them inside a forked RNG, so a step's augmentations are the same on every rerun and resume and
never touch the global RNG.

The random resized crop and the flip, the geometric part of `simclr` and `no_color`, run fused by
default (`impl="fused"`): the boxes (torchvision's rule: area U(0.2, 1), log-uniform aspect ratio in
[3/4, 4/3], the first of 10 tries that fits, else the whole image) and the flips come straight from
the Philox draws, and one `grid_sample` per batch crops, resizes (bilinear, pixel centres) and flips
every image. kornia does the same per sample through a chain of ops with per-call seeding, which made
it the largest part of the Continuous-Sampling data path on a CPU (results/bench). `impl="kornia"` keeps
kornia's path. The colour ops stay kornia's either way: next to a training step they are not the
bottleneck.
"""

from __future__ import annotations

import math

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlvgm.errors import InputError
from mlvgm.latents import uniform
from mlvgm.options import AUGMENTS
from mlvgm.streams import Draws

PRESETS = AUGMENTS
IMPLS = ("fused", "kornia")
CROP_SCALE = (0.2, 1.0)  # area of the crop, as a fraction of the image
CROP_RATIO = (3 / 4, 4 / 3)  # aspect ratio w / h of the crop
CROP_TRIES = 10
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _ops(preset: str, size: int) -> list[nn.Module]:
    crop = [K.RandomResizedCrop((size, size), scale=CROP_SCALE, ratio=CROP_RATIO)]
    center = [K.CenterCrop((size, size))]
    flip = [K.RandomHorizontalFlip()]
    color = [K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2)]
    return {
        "simclr": crop + flip + color,
        "no_color": crop + flip,
        "no_crop": center + flip + color,
        "none": center,
    }[preset]


def crop_params(n: int, source: Draws | None = None, *, device=None) -> tuple[Tensor, Tensor]:
    """(n, 4) random resized crop boxes (x0, y0, w, h) as fractions of a square image's side, and (n,)
    horizontal flips, all from one draw of (n, 2 CROP_TRIES + 3) uniforms (one Philox call: at a batch
    of 32 a call's small ops cost more than the crop itself).

    torchvision's rule, vectorised: for each image, up to CROP_TRIES (area, ratio) draws with area ~
    U(CROP_SCALE) and log ratio ~ U(log CROP_RATIO); the first that fits (w, h <= 1) is taken, else the
    whole image; then the corner uniformly where the box fits; a flip with probability 1/2.
    """
    u = uniform((n, 2 * CROP_TRIES + 3), generator=source, device=device)
    tries = u[:, : 2 * CROP_TRIES].view(n, CROP_TRIES, 2)
    area = CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * tries[..., 0]
    low, high = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    ratio = torch.exp(low + (high - low) * tries[..., 1])
    w, h = torch.sqrt(area * ratio), torch.sqrt(area / ratio)  # (n, tries)
    fits = (w <= 1) & (h <= 1)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first try that fits (0 if none does)
    found = fits.any(dim=1)
    w = torch.where(found, w.gather(1, first).squeeze(1), 1.0)
    h = torch.where(found, h.gather(1, first).squeeze(1), 1.0)
    corner, flip = u[:, 2 * CROP_TRIES : 2 * CROP_TRIES + 2], u[:, -1] < 0.5
    return torch.stack([corner[:, 0] * (1 - w), corner[:, 1] * (1 - h), w, h], dim=1), flip


def crop_flip(images: Tensor, boxes: Tensor, flip: Tensor, size: int) -> Tensor:
    """(B, C, H, W) -> (B, C, size, size): each image's box resized bilinearly, mirrored where `flip`.

    The sampling grid in normalised coordinates at pixel centres (align_corners=False): output x in
    [-1, 1] reads input x = +-w x + (2 x0 + w - 1), the sign the flip; likewise y. The map is axis
    aligned, so the grid is built from two (B, size) rows instead of affine_grid's batched product,
    which cost twice the sampling itself.
    """
    x0, y0, w, h = boxes.to(images.dtype).unbind(dim=1)  # (B,) each
    centres = (torch.arange(size, dtype=images.dtype, device=images.device) + 0.5) * (2 / size) - 1  # (S,)
    gx = torch.where(flip, -w, w)[:, None] * centres + (2 * x0 + w - 1)[:, None]  # (B, S)
    gy = h[:, None] * centres + (2 * y0 + h - 1)[:, None]  # (B, S)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (B, S, S, 2): (x, y)
    if torch.compiler.is_compiling():
        return _sample_bilinear(images, grid)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


# Inside a compiled graph, grid_sample as ATen's kernel: inductor's decomposition of it is several times slower on
# a CPU, enough to make the compiled Continuous-Sampling step slower than eager (docs/data-sources.md).
@torch.library.custom_op("mlvgm::sample_bilinear", mutates_args=())
def _sample_bilinear(images: Tensor, grid: Tensor) -> Tensor:
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


@_sample_bilinear.register_fake
def _(images: Tensor, grid: Tensor) -> Tensor:
    return images.new_empty(images.shape[0], images.shape[1], grid.shape[1], grid.shape[2])


def _sample_backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
    images, grid = ctx.saved_tensors
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
    return torch.ops.aten.grid_sampler_2d_backward(grad, images, grid, 0, 1, False, mask)  # bilinear, border


def _sample_save(ctx, inputs: tuple, output: Tensor) -> None:
    ctx.save_for_backward(*inputs)


_sample_bilinear.register_autograd(_sample_backward, setup_context=_sample_save)


def _crop_flip_normalize(images: Tensor, boxes: Tensor, flip: Tensor, size: int, mean: Tensor | None,
                         inv_std: Tensor | None) -> Tensor:  # fmt: skip
    """crop_flip, then (x - mean) * inv_std when given: one function, so that torch.compile makes it one
    pass over the views. Faster alone, but slower beside a training step and the loaders' workers in the
    loader benchmark, so the trainer leaves it off (it is compiled as part of the compiled CS step)."""
    out = crop_flip(images, boxes, flip, size)
    return (out - mean) * inv_std if mean is not None else out


class _Normalize(nn.Module):
    """(x - ImageNet mean) / std per channel: one broadcast pass (kornia's Normalize took 5x longer)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("inv_std", 1 / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.inv_std


class PixelAugment(nn.Module):
    """T_x: (B, 3, H, W) images in [0, 1] -> (B, 3, size, size) augmented and normalised views.

    preset:    one of PRESETS
    size:      output side in pixels (the crop), <= the input side
    normalize: subtract the ImageNet mean and divide by its std at the end
    impl:      "fused" (random resized crop and flip in one grid_sample) or "kornia" (kornia's ops)
    compile:   torch.compile the fused crop, flip and normalisation (fixed shapes; off in the trainer, see
               _crop_flip_normalize)
    """

    def __init__(
        self, preset: str, size: int, *, normalize: bool = True, impl: str = "fused", compile: bool = False
    ) -> None:
        super().__init__()
        if preset not in PRESETS:
            raise InputError(f"unknown augmentation {preset!r}: choose one of {', '.join(PRESETS)}")
        if impl not in IMPLS:
            raise InputError(f"unknown augmentation impl {impl!r}: choose one of {', '.join(IMPLS)}")
        self.preset, self.size, self.impl = preset, size, impl
        self.ops = K.AugmentationSequential(*_ops(preset, size))  # the whole chain, as kornia runs it
        geometric = (K.RandomResizedCrop, K.RandomHorizontalFlip)
        self.fused = impl == "fused" and any(isinstance(op, K.RandomResizedCrop) for op in self.ops.children())
        rest = [op for op in self.ops.children() if not isinstance(op, geometric)]
        self.rest = K.AugmentationSequential(*rest) if self.fused and rest else None  # colour ops after the crop
        self.normalize = _Normalize() if normalize else None
        self._view = (
            torch.compile(_crop_flip_normalize, fullgraph=True, dynamic=False) if compile else _crop_flip_normalize
        )

    def forward(self, images: Tensor, source: Draws | None = None) -> Tensor:
        """Augment a batch; `source` (one Draws per step) makes the parameters reproducible."""
        if images.shape[-1] < self.size or images.shape[-2] < self.size:
            raise InputError(f"images of {tuple(images.shape[-2:])} px are smaller than the crop {self.size}")
        if self.fused:
            boxes, flip = crop_params(images.shape[0], source, device=images.device)
            if self.rest is None and self.normalize is not None:  # crop, flip and normalise in one pass
                return self._view(images, boxes, flip, self.size, self.normalize.mean, self.normalize.inv_std)
            out = self._view(images, boxes, flip, self.size, None, None)
            out = self._kornia(self.rest, out, source) if self.rest is not None else out
        else:
            out = self._kornia(self.ops, images, source)
        return self.normalize(out) if self.normalize is not None else out

    @staticmethod
    def _kornia(ops: nn.Module, images: Tensor, source: Draws | None) -> Tensor:
        """kornia's ops, their randomness from a 64-bit torch seed drawn from `source` in a forked RNG."""
        if source is None:
            return ops(images)
        low, high = source.uint32(2, "cpu").tolist()
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(low | (high << 32))
            return ops(images)
