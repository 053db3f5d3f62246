"""`DALISource`: an ImageFolder decoded and augmented by an NVIDIA DALI pipeline, for the loader benchmark.

The same interface as every data source (`mlvgm.data.sources`): `steps_per_epoch`, and `iterate(start_step)`
yielding (view_a, view_b), each (B, 3, S, S) float on the trainer's device, normalised like `PixelAugment`.
Unlike `ImageFolderSource`, T_x runs inside DALI, written with DALI operators (kornia is not involved): that
is the point of the benchmark. One pipeline per chunk of steps:

    fn.readers.file(files=this rank's next CHUNK_STEPS * B paths, name="Reader")       encoded bytes
    fn.decoders.image                    "cpu" (libjpeg-turbo), or "mixed" (nvJPEG) for a CUDA device
    fn.resize(resize_shorter=R), fn.crop          ImageFolderSource's folder transform, once per image
    two independent branches on that image, one per view:
        fn.random_resized_crop(S, random_area (0.2, 1))        simclr, no_color
        fn.color_twist(brightness, contrast, saturation x (1 - gray), hue), each factor gated by
            fn.random.coin_flip(0.8); gray = fn.random.coin_flip(0.2)                 simclr, no_crop
        fn.crop_mirror_normalize(mirror=fn.random.coin_flip(0.5), ImageNet mean/std x 255, CHW, float)

Order: the reader reads an explicit file list taken from `EpochSampler`, the sampler `ImageFolderSource`
uses, rather than DALI's own shuffle (`file_root` + `random_shuffle`, sharded by `shard_id`/`num_shards`).
So step s on rank r holds exactly the images it holds under `ImageFolderSource`, for every s, and a run
resumed at step s reads from there without decoding the skipped batches: the benchmark compares loaders on
the same images, and resume is exact for images. DALI's own shuffle would be worse on two counts: it is a
reservoir of `initial_fill` (1024) samples, so a class-sorted folder gives batches from a few neighbouring
classes (`shuffle_after_epoch` shuffles globally, but in an order of its own), and a resumed run could only
decode and drop the skipped batches, approximating the interrupted order at best.
A pipeline reads CHUNK_STEPS batches and is replaced by the next: its reader needs a finite list, and the
cost of the switch (a build: 0.4 s on one CPU core for the 262,144 paths of B = 256; the first batch's
latency; the batches DALI prefetched past the end) is spread over CHUNK_STEPS steps. The files are still
read by DALI's reader thread: no Python touches the bytes.

Augmentation randomness is DALI's: its operators draw from per-operator generators that the pipeline seed
(from the (seed, rank, first step of the chunk, "augment") stream) initialises. The same `iterate(s)`
gives the same batches on every call; a run resumed at step s gets the uninterrupted run's images but
different crops, flips and jitters from s on, as DALI's generators cannot jump to a step.

Every difference from `PixelAugment` (kornia 0.9) and `ImageFolderSource` that we know of, measured on
DALI 2.4 where marked:

1. Decoding: DALI's nvImageCodec (libjpeg-turbo on CPU; nvJPEG or the hardware JPEG engine on a GPU) vs
   PIL's libjpeg-turbo. Measured on CPU: identical pixels on our quality-95 test JPEGs; a GPU decoder may
   differ by a few levels (its IDCT and chroma upsampling are its own).
2. Pre-resize: `resize_shorter` rounds the long side to the nearest integer (measured: 71 x 40/48 -> 59),
   torchvision's Resize truncates it; both filter with antialiased bilinear (measured: within 1 of 255
   levels of PIL's bilinear resize, 48 -> 40 px).
3. Centre crops: DALI rounds a half-pixel offset away from zero (measured: 33 of 48 starts at 8), the
   baseline's torchvision CenterCrop (R x R) to even and kornia's CenterCrop (S x S) down. The centre-crop
   presets (none, no_crop) take the S x S centre of the resized image in one crop, where the baseline
   crops R x R, then S x S: the same pixels, up to one pixel of shift where an offset is a half-integer.
4. Random resized crop: both draw the area fraction uniformly in [0.2, 1] and the aspect ratio (width /
   height) log-uniformly in [3/4, 4/3] (measured: DALI's log-ratio quantiles match log-uniform), with 10
   attempts. On failure kornia takes a centre crop of the largest in-range window, DALI the same window at
   a random position (measured); on our square R x R input both fall back to the whole image.
5. Crop resampling: kornia resizes the window bilinearly with align_corners=True and no antialiasing (it
   aliases when shrinking); DALI uses a linear filter with pixel-centre alignment and antialiasing when
   shrinking, on uint8 (rounded), where kornia stays in float32.
6. Jitter order: kornia applies brightness, contrast, saturation and hue in a random order drawn once per
   batch, clamping to [0, 1] after each; DALI's color_twist is one linear map in a fixed order (hue and
   saturation in YIQ, then contrast, then brightness; measured), clamped and rounded to uint8 once.
7. Brightness: the same, a multiplier drawn from U(0.6, 1.4).
8. Contrast: both draw U(0.6, 1.4), but kornia blends with the image's mean grey level, DALI scales about
   the fixed mid-grey 128 (measured: 200 -> 128 + 0.6 x 72 = 171): dark or bright images differ most.
9. Saturation: kornia blends with the BT.601 grayscale, DALI scales the YIQ chroma (I, Q): the same up to
   DALI's YIQ matrix (measured within 0.5 of 255 levels).
10. Hue: kornia shifts HSV hue by U(-0.1, 0.1) turns, DALI rotates the YIQ chroma plane by U(-36, 36)
    degrees: the same range, not the same colours (measured: 36 degrees maps (200, 100, 50) to (161, 133, 0)
    in DALI, (200, 190, 50) in HSV). YIQ rotation keeps luma; HSV shift keeps value and saturation.
11. Grayscale (p 0.2): kornia converts the jittered image with BT.601 weights; DALI sets saturation to 0 in
    the same color_twist, which yields YIQ luma (those weights, within 0.5 of 255 levels) before contrast
    and brightness, which act on all channels alike, so the result is the same but for intermediate clamps.
12. Flip: the same (p 0.5 per sample), applied in crop_mirror_normalize at the end; flipping commutes with
    every per-pixel op, so the place does not matter.
13. Normalisation: the same mean and std, applied to uint8 values (x - 255 mean) / (255 std) in float32.
14. Randomness: kornia's draws come from the (seed, rank, step, "augment-view1" / "augment-view2")
    streams; DALI's do not (above).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from mlvgm.augment import CROP_RATIO, CROP_SCALE, IMAGENET_MEAN, IMAGENET_STD, PRESETS, PixelAugment
from mlvgm.data.sources import EpochSampler, FileLoader, open_image_folder
from mlvgm.errors import InputError
from mlvgm.streams import Stream

CHUNK_STEPS = 1024  # batches read by one pipeline before the next takes over
_RANDOM_CROP = ("simclr", "no_color")  # presets that crop at random; the others take the centre
_COLOUR = ("simclr", "no_crop")  # presets with colour jitter and grayscale
# kornia's ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8) and RandomGrayscale(p=0.2), in DALI's units
_JITTER, _HUE_DEGREES, _P_JITTER, _P_GRAY = 0.4, 0.1 * 360.0, 0.8, 0.2
# image formats (PIL's names) that DALI's decoders read
_DALI_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "PPM", "JPEG2000", "WEBP")


def _import_dali():
    """The DALI modules this source uses, or the InputError that says how to install them."""
    try:
        from nvidia.dali import Pipeline, fn, types
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
    except ImportError:
        raise InputError("NVIDIA DALI is not installed: pip install mlvgm[loaders]") from None
    return Pipeline, fn, types, DALIGenericIterator, LastBatchPolicy


class DALISource(FileLoader):
    """Two T_x views of each image of an ImageFolder, decoded and augmented by an NVIDIA DALI pipeline.

    root:       the folder of class subfolders (labels are ignored for self-supervised training)
    augment:    T_x: a PixelAugment (its preset, crop size S and normalize flag are implemented in DALI), or a
                preset name from mlvgm.augment.PRESETS (then S = resolution, normalised)
    options:    FileLoader's, split and keyed like ImageFolderSource's; resolution: images are resized to this
                side (short side, then centre crop) before T_x; workers: DALI's CPU threads (num_threads);
                device: "cpu" runs DALI on the CPU, "cuda[:i]" decodes with nvJPEG ("mixed") and augments on GPU i
    """

    def __init__(self, root: str | Path, augment: PixelAugment | str, batch_size: int, **options) -> None:
        self._dali = _import_dali()
        super().__init__(augment, batch_size, **options)
        if isinstance(augment, PixelAugment):
            self.preset, self.size, self.normalize = augment.preset, augment.size, augment.normalize is not None
        elif augment in PRESETS:
            self.preset, self.size, self.normalize = augment, self.resolution, True
        else:
            raise InputError(f"unknown augmentation {augment!r}: choose one of {', '.join(PRESETS)}, or a PixelAugment")
        if self.size > self.resolution:
            raise InputError(
                f"the crop {self.size} is larger than the resolution {self.resolution}: raise the resolution"
            )
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {self.device} asked for, but CUDA is not available: run DALI with device='cpu'")
        if self.device.type not in ("cpu", "cuda"):
            raise InputError(f"DALI runs on the CPU or a CUDA GPU, not on {self.device}: choose device 'cpu' or 'cuda'")
        samples = open_image_folder(root).samples  # torchvision's listing: index i is ImageFolderSource's image i
        if not samples:
            raise InputError(f"{root} holds no images: put .jpg or .png files in its class subfolders")
        self.root, self.files = Path(root), [path for path, _ in samples]
        self.count_epoch(len(self.files), self.root)

    def iterate(self, start_step: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """(view_a, view_b) for start_step, start_step + 1, ...: each (B, 3, S, S) float32 on the device.

        A fresh DALI pipeline takes over every CHUNK_STEPS steps; the generator never ends.
        """
        sampler = EpochSampler(
            len(self.files), self.steps_per_epoch * self.batch_size, seed=self.seed, rank=self.rank,
            world=self.world, start=start_step * self.batch_size,
        )  # fmt: skip
        indices = iter(sampler)  # endless: this rank's share of epoch after epoch
        step = start_step
        while True:
            chunk = [self.files[i] for i in islice(indices, CHUNK_STEPS * self.batch_size)]
            yield from self._read(chunk, step)
            step += CHUNK_STEPS

    def _read(self, files: list[str], first_step: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of one pipeline, which reads `files` in order, B at a time, from step `first_step`."""
        _, _, _, DALIGenericIterator, LastBatchPolicy = self._dali
        pipe = self._pipeline(files, Stream(self.seed, self.rank, "augment").at(first_step))
        done = 0  # batches handed over so far
        try:  # a decode error surfaces when DALI hands over a batch: the first one is prepared right here
            loader = DALIGenericIterator(
                pipe, ["view_a", "view_b"], reader_name="Reader", last_batch_policy=LastBatchPolicy.DROP
            )
        except RuntimeError as exc:
            raise self._decode_error(exc, files, done, pipe) from None
        while True:
            try:
                out = next(loader)[0]  # one pipeline: one dict of (B, 3, S, S) tensors
            except StopIteration:
                return
            except RuntimeError as exc:
                raise self._decode_error(exc, files, done, pipe) from None
            yield out["view_a"].to(self.device, non_blocking=True), out["view_b"].to(self.device, non_blocking=True)
            done += 1

    def _decode_error(self, exc: RuntimeError, files: list[str], done: int, pipe) -> Exception:
        """The InputError for a file DALI failed to decode, or `exc` itself when it is no decode error."""
        if "decoders.image" not in str(exc):
            return exc
        # DALI does not say which sample failed, and it decodes up to prefetch_queue_depth batches ahead
        start = done * self.batch_size
        return _decode_error(files[start : start + (pipe.prefetch_queue_depth + 1) * self.batch_size], exc)

    def _pipeline(self, files: list[str], draws):
        """A built DALI pipeline whose two outputs are the views of `files`, B at a time: (B, 3, S, S) float."""
        Pipeline, fn, types, _, _ = self._dali
        gpu = self.device.type == "cuda"
        device_id = None  # a CPU-only pipeline
        if gpu:
            device_id = torch.cuda.current_device() if self.device.index is None else self.device.index
        seed = int(draws.uint32(1, "cpu").item()) & 0x7FFFFFFF  # DALI takes a non-negative int seed
        pipe = Pipeline(batch_size=self.batch_size, num_threads=self.workers, device_id=device_id, seed=seed)
        with pipe:
            encoded, _ = fn.readers.file(files=files, name="Reader")  # in our order: no shuffle, no DALI shards
            images = fn.decoders.image(encoded, device="mixed" if gpu else "cpu", output_type=types.RGB)  # (H, W, 3)
            # ImageFolderSource's folder transform; centre-crop presets take their S x S centre right here,
            # once for both views, since the centre of the R x R centre is the centre of the resized image
            side = self.resolution if self.preset in _RANDOM_CROP else self.size
            images = fn.resize(images, resize_shorter=self.resolution, antialias=True)
            images = fn.crop(images, crop=(side, side))  # (side, side, 3) uint8
            pipe.set_outputs(self._view(fn, types, images), self._view(fn, types, images))
        pipe.build()
        return pipe

    def _view(self, fn, types, images):
        """One T_x branch: (side, side, 3) uint8 -> (3, S, S) float, with its own random draws per sample."""
        if self.preset in _RANDOM_CROP:
            images = fn.random_resized_crop(
                images, size=(self.size, self.size), random_area=CROP_SCALE, random_aspect_ratio=CROP_RATIO
            )
        if self.preset in _COLOUR:
            apply = fn.random.coin_flip(probability=_P_JITTER)  # int32 0 or 1: factors stay at identity when 0
            keep = 1 - fn.random.coin_flip(probability=_P_GRAY)  # 0: saturation 0, i.e. grayscale

            def factor(spread: float):  # U(1 - spread, 1 + spread) where jitter applies, else 1
                return 1.0 + apply * (fn.random.uniform(range=(1.0 - spread, 1.0 + spread)) - 1.0)

            images = fn.color_twist(
                images,
                brightness=factor(_JITTER),
                contrast=factor(_JITTER),
                saturation=factor(_JITTER) * keep,  # grayscale folded in: one pass over the pixels, not three
                hue=apply * fn.random.uniform(range=(-_HUE_DEGREES, _HUE_DEGREES)),
            )
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if self.normalize else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        return fn.crop_mirror_normalize(
            images,
            mirror=fn.random.coin_flip(probability=0.5) if self.preset != "none" else 0,
            mean=[255.0 * m for m in mean],
            std=[255.0 * s for s in std],
            dtype=types.FLOAT,
            output_layout="CHW",
        )


def _decode_error(candidates: list[str], exc: RuntimeError) -> InputError:
    """Name the file DALI could not decode: the first of `candidates` that PIL cannot decode either, or whose
    format DALI lacks (PIL reads GIF or ICO under a .jpg name; DALI does not)."""
    for path in candidates:
        try:
            with Image.open(path) as image:
                image.load()
                kind = image.format
        except (OSError, UnidentifiedImageError, ValueError) as pil_exc:
            return InputError(f"{path} cannot be decoded ({pil_exc}): replace or delete it")
        if kind not in _DALI_FORMATS:
            return InputError(f"{path} is a {kind} image, which DALI cannot decode: convert it to JPEG or PNG")
    reason = re.search(r"encountered:\s*(.+)", str(exc))
    detail = reason.group(1).strip() if reason else "decoder error"
    return InputError(
        f"DALI could not decode one of {len(candidates)} images from {candidates[0]} on ({detail}): "
        "check them with PIL or re-encode them"
    )
