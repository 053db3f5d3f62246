"""FFCV as a data source: write an ImageFolder into a .beton, read it back as (view_a, view_b) batches.

    write_beton(folder, "train.beton", resolution=256)     ImageFolder -> FFCV file, atomically
    FFCVSource("train.beton", augment, 256, seed=0, resolution=64, device="cuda")
        .steps_per_epoch, .iterate(start_step)              the interface of mlvgm.data.sources

Writing. Sample i of the .beton is sample i of torchvision's ImageFolder (classes sorted by name,
files sorted within a class), with two fields: "image" (RGBImageField) and "label" (IntField, the
class index). Images are stored as JPEG (write_mode="jpg", quality 90) by default: the DataLoader and
DALI sources decode JPEGs too, so the benchmark compares loaders on the same work, and the file stays
the size of the JPEG folder. write_mode="raw" stores decoded pixels (no decode when loading, 3 bytes
a pixel on disk): the loader's upper bound, not a like-for-like figure. FFCV's "proportion" mode is
not offered (it draws which images to compress from an unseeded RNG in each writer process, so the
file would differ from run to run), nor "smart" (raw below a size threshold: a mix that would blur
what the benchmark measures). The stored JPEG is re-encoded by
OpenCV from the decoded source image (FFCV's field always encodes), so a JPEG source loses a little
quality a second time; `resolution` caps the longer side first (OpenCV INTER_AREA).

FFCV's writer runs in worker processes and waits, without a timeout, for every sample to be counted:
a worker that raises (an unreadable image, a sample larger than a page) leaves it waiting forever.
So an unreadable image is recorded and replaced by a 1-pixel placeholder (then the remaining
samples are skipped, to fail fast) and write_beton raises once FFCV returns; pages are sized to fit
any image at the given resolution; and FFCV's writer runs in a forked process of its own whose
watcher thread ends it when a worker dies anyway (killed, out of memory, disk full), so the write
fails with an error instead of hanging. The file is written to a hidden sibling and renamed into
place: `out` is the complete new file, or what it was before.

Reading: how the two views are made. FFCV's Loader has no two-view pipeline, but a pipeline may
name its source field (`PipelineSpec(source="image", ...)`), so one Loader can decode the same image
field through two independent pipelines: ffcv 1.0.2 has no `custom_field_mapper`; this is its
mechanism for the same thing. Two modes:

    mode="ffcv"     FFCV-native: each JPEG is decoded twice per step, each time by its own
                    RandomResizedCropRGBImageDecoder (scale and ratio read from T_x's crop) and
                    RandomHorizontalFlip, on the CPU worker threads; the photometric rest of T_x
                    (colour jitter, grayscale) and the ImageNet normalisation run on the device with
                    kornia, keyed by (seed, rank, step) like every other source. Presets without a
                    random crop (none, no_crop) decode with CenterCropRGBImageDecoder at T_x's size
                    from a `resolution` short side; `none` (no random geometry) decodes once.
    mode="device"   decode once per image at `resolution` (centre square of the short side, resized),
                    then the whole of T_x on the device, twice: what ImageFolderSource does, so the
                    two sources differ only in the loader.

Semantic differences of mode="ffcv" from kornia's T_x (mode="device" has none of these):
- The random crop is drawn from the whole stored image (its aspect ratio kept), not from the centre
  square resized to `resolution`; the area scale and log-uniform aspect ratio are drawn as in
  torchvision (10 tries, then a clamped centre crop), and the crop is resized with OpenCV's
  INTER_AREA (kornia: bilinear, no antialiasing).
- The crop and flip draws come from numba's per-thread NumPy RNG, which FFCV never seeds: they differ
  between runs and a resumed run does not repeat them (the images and their order do repeat, and the
  device-side colour draws are keyed by the step).
- FFCV's core has no colour jitter with hue and no grayscale (ffcv 1.0.2 has brightness, contrast and
  saturation only), hence those ops stay in kornia, on the device, after the crop, as in the preset.
- JPEGs are decoded by libjpeg-turbo with its fast integer IDCT (PIL uses the accurate one).

Order. Each epoch's order is ImageFolderSource's: the permutation of the (seed, "shuffle") stream
at that epoch, the same on every rank; rank r takes positions r, r + world_size, ... of it and the
first steps_per_epoch * batch_size of those (drop_last). So ranks read disjoint shards that change
every epoch, as with torch's DistributedSampler, without an initialised process group (FFCV's
distributed=True needs one); the order is reproducible across runs with the same seed; and the same
seed gives FFCVSource and ImageFolderSource the same images at every step (beton index = ImageFolder
index). A resumed run at step s starts the epoch's order at its (s mod steps_per_epoch)-th batch
without decoding the batches before it. The order is given to FFCV's Loader as a custom
TraversalOrder; OrderOption.RANDOM (numpy default_rng(seed + epoch)) would be reproducible too, but
shards by rank only through torch.distributed, and QUASI_RANDOM (page-local shuffling for datasets
larger than memory, with os_cache=False) is not offered: the file is memory-mapped (os_cache=True).

Output: FFCV yields uint8 (B, S, S, 3) -> ToTensor -> ToDevice (CUDA only) -> ToTorchImage, a
channels-last (B, 3, S, S) view; then float, / 255, T_x's device part, ImageNet mean/std.

Importing ffcv sets torch's intra-op thread count to 1, and building or starting a loader sets it to
FFCV's worker count; this module puts it back each time, so a CPU trainer keeps its threads. numba
compiles a source's pipelines on its first batch: 1-6 s with one worker, about 15 s with two or more
(parallel code), measured on 2 CPU cores; once per FFCVSource.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kornia.augmentation as K
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from mlvgm.augment import CROP_RATIO, CROP_SCALE, PixelAugment
from mlvgm.data import sources
from mlvgm.data.sources import EpochSampler, FileLoader, view_streams
from mlvgm.errors import InputError, check_nonnegative_int, check_positive_int
from mlvgm.io import atomic_path, check_output_file

WRITE_MODES = ("jpg", "raw")
MODES = ("ffcv", "device")
_MIN_PAGE = 1 << 23  # FFCV's default page (8 MiB): the smallest we use
_MAX_PAGE = 1 << 31  # the largest power of two below FFCV's 32-bit page size field
# The compiled pipelines of every loader built, kept until exit: FFCV compiles the same Python functions
# into a new numba dispatcher per loader, and collecting one trips a numba finalizer bug (a KeyError
# printed as "Exception ignored"). What stays is the code and the sample metadata its operations hold
# (24 bytes per image); the loader's file map, tables and batch buffers are freed.
_COMPILED: list = []
_INSTALL = "pip install mlvgm[loaders] (ffcv builds against libturbojpeg and OpenCV)"


def _import_ffcv():
    """The ffcv module, imported on first use (it takes seconds: numba), or InputError naming the install."""
    threads = torch.get_num_threads()  # importing ffcv sets torch's thread count to 1
    try:
        import ffcv.fields
        import ffcv.fields.basics
        import ffcv.fields.rgb_image
        import ffcv.loader
        import ffcv.pipeline
        import ffcv.reader
        import ffcv.transforms
        import ffcv.traversal_order.base
        import ffcv.types
        import ffcv.writer
    except ImportError as exc:
        raise InputError(f"FFCV is not installed ({exc}): {_INSTALL}") from None
    finally:
        torch.set_num_threads(threads)
    return ffcv


# -- writing ------------------------------------------------------------------------------------------


def _stored_bytes(height: int, width: int, resolution: int | None) -> int:
    """Upper bound on the bytes FFCV stores for one image: its pixels after the resolution cap.

    JPEG with 4:2:0 chroma (OpenCV's default) stays below the raw size at any quality, so one bound
    serves both write modes; 64 KiB covers JPEG headers and tables.
    """
    if resolution is not None and max(height, width) > resolution:
        ratio = resolution / max(height, width)  # FFCV's rounding: truncate the scaled sides
        height, width = int(ratio * height), int(ratio * width)
    return 3 * height * width + (1 << 16)


def _page_size(resolution: int | None) -> int:
    """Smallest power of two >= FFCV's default page that holds any image capped at `resolution`."""
    if resolution is None:
        return _MIN_PAGE  # unknown sizes: larger images are reported with the fix (pass resolution)
    need = _stored_bytes(resolution, resolution, None)
    page = max(_MIN_PAGE, 1 << math.ceil(math.log2(need)))
    if page > _MAX_PAGE:
        raise InputError(f"resolution {resolution} is too large for FFCV's 32-bit pages: choose at most 16384")
    return page


_PLACEHOLDER = np.zeros((1, 1, 3), dtype=np.uint8)  # what an unreadable image becomes in a failed write


class _SharedMessage:
    """The first of the messages recorded by any process (shared memory made before the fork)."""

    def __init__(self) -> None:
        self.count = multiprocessing.Value(ctypes.c_int64, 0)
        self.text = multiprocessing.Array(ctypes.c_char, 1024)

    def record(self, message: str) -> None:
        with self.count.get_lock():
            if self.count.value == 0:
                self.text.value = " ".join(message.split()).encode()[:1023]  # one line
            self.count.value += 1

    def get(self) -> str | None:
        return self.text.value.decode(errors="replace") if self.count.value else None


class _FolderImages:
    """An ImageFolder as FFCV's writer reads it: sample i -> ((H, W, 3) uint8 array, class index).

    Runs in the writer's processes. A failure is recorded in shared memory instead of raised (an
    exception would kill the worker and leave FFCV's writer waiting): the first message is kept,
    the image becomes a placeholder, and later samples are skipped as placeholders too.
    """

    def __init__(self, samples: list[tuple[str, int]], resolution: int | None, page_size: int) -> None:
        self.samples, self.resolution, self.page_size = samples, resolution, page_size
        self.unreadable = _SharedMessage()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        path, label = self.samples[index]
        if self.unreadable.count.value:
            return _PLACEHOLDER, label
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            self.unreadable.record(f"cannot read image {path} ({exc}): fix or remove it and write the .beton again")
            return _PLACEHOLDER, label
        height, width = pixels.shape[:2]
        if _stored_bytes(height, width, self.resolution) > self.page_size:
            self.unreadable.record(
                f"image {path} ({width}x{height} px) does not fit FFCV's {self.page_size >> 20} MiB page: "
                "pass a resolution (--resolution) to cap the longer side"
            )
            return _PLACEHOLDER, label
        return pixels, label


def _supervise(path: str, fields: dict, page: int, workers: int, dataset: _FolderImages, crash: _SharedMessage):
    """The writer process: run FFCV's writer into `path` and end it if one of its workers dies.

    FFCV's writer waits for its workers without a timeout, so a dead worker would hang it. Here it
    runs in the main thread of a process of its own (FFCV forks its workers from there: numba's TBB
    pool only tolerates forks from a main thread), while a thread watches the workers. They are
    recorded as they start (ffcv.writer's Process is replaced by a recording subclass, in this
    process only: it exists for this one write), so one that dies at once is still seen; polling
    multiprocessing.active_children() would miss it, as reaped. If one exits with an error, or this
    process is asked to stop (SIGTERM), the other workers are terminated and it exits with status 1.
    """
    ffcv = _import_ffcv()
    started: list[multiprocessing.Process] = []

    class Recorded(multiprocessing.Process):
        def start(self) -> None:
            super().start()
            started.append(self)

    ffcv.writer.Process = Recorded

    def stop(message: str | None) -> None:
        if message:
            crash.record(message)
        for process in list(started):  # only this writer's own workers, by their objects
            if process.is_alive():
                process.terminate()
        os._exit(1)  # no cleanup to run: the parent removes the file

    def watch() -> None:
        while True:
            time.sleep(0.2)
            dead = [p.exitcode for p in list(started) if p.exitcode not in (None, 0)]
            if dead:
                stop(f"an FFCV writer process died (exit code {dead[0]}; out of memory or disk space?)")

    signal.signal(signal.SIGTERM, lambda *_: stop(None))
    threading.Thread(target=watch, name="ffcv-writer-watch", daemon=True).start()
    chunksize = max(1, min(100, len(dataset) // (4 * workers)))  # small datasets still use every worker
    try:
        writer = ffcv.writer.DatasetWriter(path, fields, page_size=page, num_workers=workers)
        writer.from_indexed_dataset(dataset, chunksize=chunksize)
    except Exception as exc:  # noqa: BLE001 -- reported to the parent, which raises it as one line
        stop(f"FFCV's writer failed: {type(exc).__name__}: {exc}")


def _write(path: Path, fields: dict, page: int, workers: int, dataset: _FolderImages) -> None:
    """Run _supervise in a forked process and wait for it; RuntimeError if it failed, InputError for bad images."""
    crash = _SharedMessage()
    process = multiprocessing.get_context("fork").Process(
        target=_supervise, args=(str(path), fields, page, workers, dataset, crash), name="ffcv-writer"
    )
    process.start()
    try:
        process.join()
    finally:
        if process.is_alive():  # interrupted (Ctrl-C): its SIGTERM handler stops its workers
            process.terminate()
            process.join()
    unreadable = dataset.unreadable.get()
    if unreadable is not None:
        raise InputError(unreadable)
    if process.exitcode != 0:
        raise RuntimeError(
            f"{crash.get() or f'the FFCV writer process failed (exit code {process.exitcode})'}: no .beton was written"
        )


def write_beton(
    image_folder: str | os.PathLike,  # ImageFolder root: one subfolder of images per class
    out: str | os.PathLike,  # .beton file to write; replaced only once the new one is complete
    *,
    resolution: int | None = None,  # cap the longer side at this many pixels (None: keep the sizes)
    quality: int = 90,  # JPEG quality of the stored images (write_mode "jpg")
    write_mode: str = "jpg",  # "jpg" (like-for-like with the JPEG loaders) or "raw" (decoded pixels)
    workers: int | None = None,  # writer processes (None: one per available CPU core)
    overwrite: bool = False,  # replace an existing `out`
) -> Path:
    """Write an ImageFolder into an FFCV .beton with fields "image" and "label"; return its path.

    Shows FFCV's progress bar (tqdm). Sample i is ImageFolder sample i; labels are class indices.
    """
    if resolution is not None:
        check_positive_int("resolution", resolution)
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise InputError(f"JPEG quality must be an integer from 1 to 100, got {quality!r}")
    if write_mode not in WRITE_MODES:
        raise InputError(f"unknown FFCV write mode {write_mode!r}: choose one of {', '.join(WRITE_MODES)}")
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    check_positive_int("workers", workers)
    root = Path(image_folder)
    if not root.is_dir():
        raise InputError(f"image folder {root} does not exist: give the path of an ImageFolder (class subfolders)")
    try:
        folder = sources.image_folder(root)  # the walk that follows each real folder once
    except (FileNotFoundError, RuntimeError) as exc:
        why = " ".join(str(exc).split())
        raise InputError(f"{root} is not an ImageFolder ({why}): it needs one subfolder of images per class") from None
    if not folder.samples:
        raise InputError(f"{root} has no images: its class subfolders are empty")
    out = check_output_file(out, flag="--out", suffixes=(".beton",))
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists: choose another path, or overwrite it (--overwrite)")

    ffcv = _import_ffcv()
    page = _page_size(resolution)
    dataset = _FolderImages(folder.samples, resolution, page)
    fields = {
        "image": ffcv.fields.RGBImageField(write_mode=write_mode, max_resolution=resolution, jpeg_quality=quality),
        "label": ffcv.fields.IntField(),
    }
    with atomic_path(out) as tmp:  # on any error the partial file (or one with placeholders) is removed
        _write(tmp, fields, page, workers, dataset)
    return out


def write_split_betons(
    dataset: str | os.PathLike,  # a folder made by mlvgm.data.export: train/ and val/ ImageFolders
    *,
    resolution: int | None = None,  # as in write_beton
    quality: int = 90,
    write_mode: str = "jpg",
    workers: int | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write DIR/train.beton and DIR/val.beton for each split that has images; return their paths."""
    dataset = Path(dataset)
    options = dict(resolution=resolution, quality=quality, write_mode=write_mode, workers=workers, overwrite=overwrite)
    written = []
    for split in ("train", "val"):
        folder = dataset / split
        if not folder.is_dir() or not sources.image_folder(folder).samples:
            continue  # an export with val_fraction 0 has an empty val/
        written.append(write_beton(folder, dataset / f"{split}.beton", **options))
    if not written:
        raise InputError(f"{dataset} has no images in train/ or val/: export a dataset first")
    return written


# -- reading ------------------------------------------------------------------------------------------


def check_beton(path: str | os.PathLike) -> int:
    """Number of samples of a complete FFCV .beton with an RGB "image" field, else one-line InputError.

    FFCV's Reader trusts the file: a truncated or foreign file fails deep inside it (or reads
    garbage), so the header, field table, metadata and allocation table are checked against the
    file's size first.
    """
    ffcv = _import_ffcv()
    types = ffcv.types
    path = Path(path)
    fix = "write it with write_beton (python -m mlvgm.data.export --format ffcv)"
    if not path.is_file():
        raise InputError(f"FFCV dataset {path} does not exist: {fix}")
    size = path.stat().st_size

    def bad(why: str) -> InputError:
        return InputError(f"{path} is not a complete FFCV .beton ({why}): {fix}")

    if size < types.HeaderType.itemsize:
        raise bad(f"{size} bytes, shorter than the header")
    header = np.fromfile(path, dtype=types.HeaderType, count=1)[0]
    if header["version"] != types.CURRENT_VERSION:
        raise bad(f"format version {header['version']}, expected {types.CURRENT_VERSION}")
    n, count, page = int(header["num_samples"]), int(header["num_fields"]), int(header["page_size"])
    if not 0 < count <= 64 or page < (1 << 21) or page & (page - 1) or n == 0:
        raise bad(f"header says {n} samples, {count} fields, page size {page}")
    table_end = types.HeaderType.itemsize + count * types.FieldDescType.itemsize
    if size < table_end:
        raise bad("the field table is cut off")
    fields = np.fromfile(path, dtype=types.FieldDescType, count=count, offset=types.HeaderType.itemsize)
    names = [bytes(f["name"]).split(b"\0")[0].decode("ascii", errors="replace") for f in fields]
    ids = [int(f["type_id"]) for f in fields]
    if any(i not in types.TYPE_ID_HANDLER for i in ids):
        raise bad(f"unknown field types {ids}")
    if "image" not in names or types.TYPE_ID_HANDLER[ids[names.index("image")]] is not ffcv.fields.RGBImageField:
        raise bad(f"no RGB image field named 'image' among {names}")
    if any(types.TYPE_ID_HANDLER[i] is None for i in ids):
        raise bad(f"custom fields in {names}")
    metadata_end = table_end + n * types.get_metadata_type(types.get_handlers(fields)).itemsize
    allocations = int(header["alloc_table_ptr"])
    if not metadata_end <= allocations <= size or (size - allocations) % types.ALLOC_TABLE_TYPE.itemsize:
        raise bad("the file is truncated or its allocation table is misplaced")
    try:
        reader = ffcv.reader.Reader(str(path))
    except (AssertionError, ValueError, IndexError, KeyError, OSError) as exc:
        raise bad(" ".join(str(exc).split())) from None
    images = reader.metadata[reader.metadata.dtype.names[names.index("image")]]  # FFCV leaves the columns unnamed
    if not np.isin(images["data_ptr"], reader.alloc_table["ptr"]).all():
        raise bad("some images point outside the allocation table")
    return n


def _order_class():
    """A TraversalOrder subclass (FFCV's base class needs ffcv imported, hence built on first use)."""
    base = _import_ffcv().traversal_order.base.TraversalOrder

    class EpochOrder(base):
        """This rank's share of ImageFolderSource's epoch permutation; the start of a resumed epoch left out.

        FFCV's Loader calls a TraversalOrder instance with itself (`order(loader)`) to bind it; this
        one needs nothing from the loader, so it returns itself.
        """

        def __init__(self, size: int, per_epoch: int, *, seed: int, rank: int, world: int) -> None:
            # the base __init__ reads the loader, which does not exist yet; sample_order never needs it
            self.epochs = EpochSampler(size, per_epoch, seed=seed, rank=rank, world=world, start=0)
            self.per_epoch = per_epoch
            self.skip = (0, 0)  # (epoch, samples): the samples of that epoch already done before a resume

        def __call__(self, loader) -> EpochOrder:
            return self

        def indices(self, epoch: int) -> np.ndarray:
            e = self.epochs
            mine = e.permutation(epoch)[e.rank :: e.world][: self.per_epoch]
            return mine.numpy().astype(np.uint64)  # FFCV's own orders are uint64 sample ids

        def sample_order(self, epoch: int) -> np.ndarray:
            first_epoch, done = self.skip
            order = self.indices(epoch)
            return order[done:] if epoch == first_epoch else order

    return EpochOrder


@dataclass(frozen=True)
class _Split:
    """T_x divided between FFCV (geometry, on the CPU workers) and the device (the rest)."""

    crop: tuple[tuple[float, float], tuple[float, float]] | None  # (scale, ratio) of a random crop; None: centre
    flip: float  # probability of a horizontal flip (0: none)
    device: PixelAugment  # the photometric ops and normalisation, keyed like PixelAugment

    @property
    def random(self) -> bool:
        return self.crop is not None or self.flip > 0.0


def split_augment(augment: PixelAugment) -> _Split:
    """Which of T_x's ops FFCV runs in mode="ffcv", and a PixelAugment of the ops left for the device."""
    crop, flip, rest = None, 0.0, []
    for op in augment.ops.children():
        if isinstance(op, K.RandomResizedCrop):
            crop = (CROP_SCALE, CROP_RATIO)  # what every PixelAugment crop is built with
        elif isinstance(op, K.RandomHorizontalFlip):
            flip = float(op.p)
        elif not isinstance(op, K.CenterCrop):  # the centre crop is FFCV's decoder when there is no random one
            rest.append(op)
    device = PixelAugment("none", augment.size, normalize=augment.normalize is not None)
    device.ops = K.AugmentationSequential(*rest)  # reuse PixelAugment's keyed, forked-RNG forward
    if augment.normalize is not None:  # where the caller put T_x: its normalisation's device and dtype
        device.to(augment.normalize.mean)
    return _Split(crop, flip, device)


class FFCVSource(FileLoader):
    """Two views of each image of an FFCV .beton, read by FFCV's Loader (see the module docstring).

    beton:      a .beton with an RGB field "image" (write_beton makes one)
    augment:    T_x; its size is the side of the views
    mode:       "ffcv" (FFCV's random crop and flip, two decodes) or "device" (one decode, kornia T_x)
    options:    FileLoader's; resolution, mode "device": the decoded side T_x crops from, mode "ffcv": the short
                side the centre crop of presets without a random crop is taken from (as if resized to it);
                workers: FFCV decoding threads (numba)
    """

    def __init__(
        self, beton: str | os.PathLike, augment: PixelAugment, batch_size: int, *, mode: str = "ffcv", **options
    ) -> None:
        super().__init__(augment, batch_size, **options)
        if mode not in MODES:
            raise InputError(f"unknown FFCV source mode {mode!r}: choose one of {', '.join(MODES)}")
        if self.resolution < augment.size:
            raise InputError(f"resolution {self.resolution} is smaller than the crop {augment.size}: raise it")
        self.beton, self.mode = Path(beton), mode
        self.num_samples = check_beton(self.beton)
        import numba  # with ffcv, since check_beton imported it

        if self.workers > (most := numba.config.NUMBA_NUM_THREADS):
            raise InputError(f"workers {self.workers} is more than numba's {most} threads (one per CPU core): lower it")
        self.count_epoch(self.num_samples, self.beton)
        self.split = split_augment(augment) if mode == "ffcv" else None
        self.order = _order_class()(
            self.num_samples, self.steps_per_epoch * batch_size, seed=self.seed, rank=self.rank, world=self.world
        )
        self.pixels = view_streams(self.seed, self.rank)
        self._loader = None  # built on first use: numba compiles its pipelines on the first batch

    def indices(self, epoch: int) -> np.ndarray:
        """(steps_per_epoch * batch_size,) sample indices this rank reads in `epoch`, in order."""
        return self.order.indices(epoch)

    def _pipeline(self, decoder) -> list:
        ffcv = _import_ffcv()
        T = ffcv.transforms
        ops = [decoder]
        if self.split is not None and self.split.flip > 0.0:
            ops.append(T.RandomHorizontalFlip(self.split.flip))
        ops.append(T.ToTensor())  # (B, S, S, 3) uint8
        if self.device.type == "cuda":
            ops.append(T.ToDevice(self.device, non_blocking=True))
        return [*ops, T.ToTorchImage()]  # (B, 3, S, S), a channels-last view

    def _decoder(self):
        rgb = _import_ffcv().fields.rgb_image
        if self.split is None:  # mode "device": the centre square of the short side, at `resolution`
            return rgb.CenterCropRGBImageDecoder((self.resolution, self.resolution), ratio=1.0)
        size = self.augment.size
        if self.split.crop is None:  # a centre crop of side size/resolution of the short side
            return rgb.CenterCropRGBImageDecoder((size, size), ratio=size / self.resolution)
        scale, ratio = self.split.crop
        return rgb.RandomResizedCropRGBImageDecoder((size, size), scale=scale, ratio=ratio)

    def loader(self):
        """FFCV's Loader for this source: outputs (image,) or (image, image2), each (B, 3, S, S) uint8."""
        if self._loader is None:
            ffcv = _import_ffcv()
            pipelines = {"image": self._pipeline(self._decoder()), "label": None}  # labels are not read
            if self.split is not None and self.split.random:  # the second view: the same field, decoded again
                pipelines["image2"] = ffcv.pipeline.PipelineSpec(
                    "image", decoder=self._decoder(), transforms=self._pipeline(None)[1:]
                )
            threads = torch.get_num_threads()
            self._loader = ffcv.loader.Loader(
                str(self.beton),
                batch_size=self.batch_size,
                num_workers=self.workers,
                os_cache=True,
                order=self.order,
                seed=self.seed,  # unused by our order; given so that FFCV does not draw one from NumPy's global RNG
                pipelines=pipelines,
                drop_last=True,
            )
            torch.set_num_threads(threads)  # FFCV sets torch's thread count to its worker count
            _COMPILED.append(self._loader.code)
        return self._loader

    def _unit(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) uint8 from FFCV -> float in [0, 1] on the device (a copy: FFCV reuses its buffers)."""
        return images.to(self.device, non_blocking=True).float().div_(255.0)

    @torch.no_grad()  # a function, not a `with` around the yield: the caller's step must keep its grad mode
    def _views(self, batch: tuple[Tensor, ...], step: int) -> tuple[Tensor, Tensor]:
        """FFCV's outputs of one step -> (view_a, view_b), each (B, 3, S, S) float, normalised, on the device."""
        first, second = (stream.at(step) for stream in self.pixels)
        if self.split is None:
            x = self._unit(batch[0])  # (B, 3, R, R)
            return self.augment(x, first), self.augment(x, second)
        a = self._unit(batch[0])  # (B, 3, S, S)
        b = self._unit(batch[1]) if len(batch) > 1 else a  # presets without random geometry decode once
        return self.split.device(a, first), self.split.device(b, second)

    def iterate(self, start_step: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        check_nonnegative_int("start step", start_step)
        loader = self.loader()
        threads = torch.get_num_threads()
        epoch, offset = divmod(start_step, self.steps_per_epoch)
        step = start_step
        while True:
            self.order.skip = (epoch, offset * self.batch_size)
            loader.next_epoch = epoch  # FFCV asks the order for this epoch, then counts on from it
            batches = iter(loader)
            try:
                for i, batch in enumerate(batches):
                    if i == 0:  # FFCV's loading thread has set torch's thread count by now
                        torch.set_num_threads(threads)
                    yield self._views(batch, step)
                    step += 1
            finally:
                batches.close()  # stops FFCV's loading thread when the caller stops early
            epoch, offset = epoch + 1, 0
