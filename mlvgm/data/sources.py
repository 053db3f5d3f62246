"""Data sources: where the trainer's (view_a, view_b) batches come from, one interface for all.

    source.steps_per_epoch                     steps in one epoch
    source.iterate(start_step)                 yields (view_a, view_b), each (B, 3, S, S) on the device,
                                               for start_step, start_step + 1, ... forever

- `ContinuousSampling` (the paper's section 3.3): every step draws fresh anchors from the
  (seed, rank, step) stream, makes positives with T_z, renders both with the generator on the
  trainer's device in one forward, and applies T_x. No dataset, no disk, no host round trip. An
  epoch is a fixed number of steps (a reference dataset's size / batch), as in the paper, so epochs
  compare with real-data training. Compiled, the whole step is one graph (`mlvgm.data.step_graph`),
  captured into a CUDA graph and made one step ahead on a side stream on CUDA (`mlvgm.data.overlap`).
- `ImageFolderSource`: an ImageFolder read by the torch DataLoader (workers, pinned memory), shuffled
  per epoch by the (seed, "shuffle") stream and split across ranks; T_x makes two views of each image
  on the device.

Both are pure functions of the step: a resumed run gets exactly the batches the uninterrupted run got.
"""

from __future__ import annotations

import heapq
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Sampler
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from mlvgm.augment import PixelAugment
from mlvgm.data.overlap import CudaStreams, DoubleBuffer, SameStream
from mlvgm.data.step_graph import StepGraph
from mlvgm.errors import InputError, check_nonnegative_int, check_positive_int
from mlvgm.generators.base import device_of, sample_anchors
from mlvgm.io import check_regular_file
from mlvgm.streams import Draws, Stream


def view_streams(seed: int, rank: int) -> tuple[Stream, Stream]:
    """The T_x streams of a pair's first and second view: each view's crops, flips and colours are drawn
    from its own stream, so the two never depend on the order the views are augmented in."""
    return Stream(seed, rank, "augment-view1"), Stream(seed, rank, "augment-view2")


class ContinuousSampling:
    """Fresh generated views every step (paper section 3.3, Appendix C).

    generator:       the MLVGM, on the trainer's device (put in eval mode here; its weights frozen)
    views:           T_z, a view strategy from mlvgm.views (NoViews, RandomViews)
    augment:         T_x, a PixelAugment
    batch_size:      pairs per step on this rank
    seed, rank:      key of this rank's streams: ranks never share latents
    steps_per_epoch: steps that make one epoch
    truncation:      anchor truncation t (None = untruncated)
    compile:         run `produce` as one compiled graph (fixed shapes; the compile is repaid over many steps:
                     mlvgm.recipe.cs_path decides for a training config); False calls it eagerly
    amp:             render under bf16 autocast (for CUDA generators such as StyleGAN2 at 512 px; the
                     images come back in fp32)
    render_chunk:    images per generator forward (None: a step's 2 x batch_size anchors and positives in
                     one). Bounds the memory of large generators at large batches (BigBiGAN at 128 px and 512
                     images overran 24 GiB on a CPU); a chunk that divides 2 x batch_size compiles once.
    cuda_graphs:     on CUDA, replay the compiled step from a CUDA graph (falls back, saying why, where
                     capture fails)
    overlap:         on CUDA, make step s + 1 on a side stream while the trainer uses step s (a yielded
                     batch is then valid until the next is requested)

    A batch is made by one function of the step, `produce`: eager, it is called with the step as an int;
    compiled, with the step as a tensor (`mlvgm.data.step_graph`). A T_x with colour ops (kornia's, which
    draw their seed on the host) runs after the compiled graph, eagerly.
    """

    def __init__(
        self,
        generator,
        views,
        augment: PixelAugment,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        steps_per_epoch: int,
        truncation: float | None = None,
        compile: bool = False,
        amp: bool = False,
        render_chunk: int | None = None,
        cuda_graphs: bool = False,
        overlap: bool = False,
    ) -> None:
        self.render_chunk = None if render_chunk is None else check_positive_int("render_chunk", render_chunk)
        self.generator = generator.eval().requires_grad_(False)
        self.amp = amp
        self.views, self.augment = views, augment
        self.batch_size, self.truncation = batch_size, truncation
        self.steps_per_epoch = steps_per_epoch
        self.rank = rank
        self.anchors = Stream(seed, rank, "anchors")
        self.positives = Stream(seed, rank, "views")
        self.pixels = view_streams(seed, rank)
        device = device_of(self.generator)
        self.render = self.generator
        self.step_graph = None
        if compile:
            self.step_graph = StepGraph(self.produce, device, cuda_graphs=cuda_graphs and device.type == "cuda",
                                        name="Continuous Sampling step")  # fmt: skip
        self.streams = CudaStreams(device) if overlap and device.type == "cuda" else SameStream()
        self.path = None  # the choice of compile, graph and overlap, and why (mlvgm.recipe.cs_path), when it made one

    @torch.no_grad()
    def images(self, step: int) -> tuple[Tensor, Tensor]:
        """The generated anchor and positive images of a step, before T_x: (B, 3, H, W) each."""
        return self._images(self.anchors.at(step), self.positives.at(step))

    def _images(self, anchors: Draws, positives: Draws) -> tuple[Tensor, Tensor]:
        z = sample_anchors(self.generator, self.batch_size, truncation=self.truncation, generator=anchors)
        pair = self.views(z, positives)
        both = [torch.cat([a, p]) for a, p in zip(pair.anchors, pair.positives, strict=True)]  # (2B, d_i)
        with torch.autocast(both[0].device.type, dtype=torch.bfloat16, enabled=self.amp):
            images = self._render(both)
        return images.float().chunk(2)

    def _render(self, latents: list[Tensor]) -> Tensor:
        """One forward for anchors and positives together, or one per render_chunk images of them."""
        n = latents[0].shape[0]
        chunk = self.render_chunk or n
        if chunk >= n:
            return self.render(latents)
        return torch.cat([self.render([z[i : i + chunk] for z in latents]) for i in range(0, n, chunk)])

    @property
    def colour_after_graph(self) -> bool:
        """Whether T_x runs after the compiled step: its colour ops (kornia) draw their seed on the host."""
        return not (self.augment.fused and self.augment.rest is None)

    @property
    def mode(self) -> str:
        """The path that makes the batches: "eager", "compiled" or "graph" (a CUDA graph of the compiled step);
        after the first batch, what ran (a compile or capture that failed fell back, saying why)."""
        return "eager" if self.step_graph is None else self.step_graph.mode

    @torch.no_grad()
    def produce(self, step: Tensor | int) -> tuple[Tensor, ...]:
        """A step's (view_a, view_b), each (B, 3, S, S). With the step as a 0-d int64 tensor every draw is keyed
        by it and nothing is read on the host, so that it compiles to one graph; then, where T_x has colour ops,
        the (anchor, positive) images before T_x, which `batch` augments after the graph."""
        traced = isinstance(step, Tensor)
        anchors, positives, first, second = (Draws(s.key, step=step, rank=self.rank) if traced else s.at(step)
                                             for s in (self.anchors, self.positives, *self.pixels))  # fmt: skip
        anchor, positive = self._images(anchors, positives)
        if traced and self.colour_after_graph:
            return anchor, positive
        return self.augment(anchor, first), self.augment(positive, second)

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        if self.step_graph is None:
            return self.produce(step)
        out = self.step_graph(step)
        if not self.colour_after_graph:
            # a CUDA graph's outputs are overwritten by its next replay; double buffering copies them itself
            return out if self.step_graph.graph is None or self.streams.overlaps else tuple(t.clone() for t in out)
        first, second = (stream.at(step) for stream in self.pixels)
        with torch.no_grad():
            return self.augment(out[0], first), self.augment(out[1], second)

    def iterate(self, start_step: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        return DoubleBuffer(self.batch, self.streams).iterate(start_step)


class EpochSampler(Sampler[int]):
    """Indices of this rank's share of each epoch's permutation, from (epoch, offset) on, forever."""

    def __init__(self, size: int, per_epoch: int, *, seed: int, rank: int, world: int, start: int) -> None:
        self.size, self.per_epoch, self.seed, self.rank, self.world = size, per_epoch, seed, rank, world
        self.start = start  # index of the first sample to yield, counted over all epochs

    def permutation(self, epoch: int) -> Tensor:
        keys = Stream(self.seed, purpose="shuffle").at(epoch).uint32(self.size)
        return torch.argsort(keys, stable=True)  # the same order on every rank

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.per_epoch)
        while True:
            mine = self.permutation(epoch)[self.rank :: self.world][: self.per_epoch]
            yield from mine[offset:].tolist()
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # DataLoader asks; the stream is endless
        return 2**62


class FileLoader:
    """What the file loaders (ImageFolderSource, DALISource, FFCVSource) share: one rank's share of an
    epoch of stored images, two T_x views of each, and these options, checked here once.

    augment:    T_x
    batch_size: pairs per step on this rank
    seed:       key of the epoch order (shared by all ranks) and of T_x's draws
    rank, world_size: this rank's disjoint share of each epoch; no process group needed
    resolution: the side images are brought to before T_x (each loader says how)
    workers:    the loader's worker processes or threads (at least `min_workers`)
    device:     where the views are made and yielded
    """

    min_workers = 1

    def __init__(
        self,
        augment,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        resolution: int,
        workers: int = 2,
        device: torch.device | str = "cpu",
    ) -> None:
        for name, value in (("batch size", batch_size), ("world size", world_size), ("resolution", resolution)):
            check_positive_int(name, value)
        check_nonnegative_int("rank", rank)
        if rank >= world_size:
            raise InputError(f"rank {rank} is not below the world size {world_size}: ranks count from 0")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < self.min_workers:
            raise InputError(f"workers must be an integer >= {self.min_workers}, got {workers!r}")
        self.augment, self.batch_size, self.device = augment, batch_size, torch.device(device)
        self.seed, self.rank, self.world, self.resolution, self.workers = seed, rank, world_size, resolution, workers

    def count_epoch(self, images: int, where: object) -> None:
        """Sets steps_per_epoch for `images` stored images (the last partial global batch is dropped), or
        InputError when `where` holds fewer than one global batch."""
        if images < self.batch_size * self.world:
            raise InputError(
                f"{where} has {images} images, fewer than one global batch ({self.batch_size * self.world})"
            )
        self.steps_per_epoch = images // (self.batch_size * self.world)


def open_image_folder(root: str | Path, transform=None) -> ImageFolder:
    """The ImageFolder at root for training, or InputError saying what the folder lacks."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image folder {root} does not exist: give the path of an ImageFolder (class subfolders)")
    try:
        return image_folder(root, transform=transform)
    except (FileNotFoundError, RuntimeError) as exc:
        raise InputError(f"{root} is not an ImageFolder ({exc}): it needs one subfolder of images per class") from None


class ImageFolderSource(FileLoader):
    """Two T_x views of each image of an ImageFolder, read by the torch DataLoader.

    root:       the folder of class subfolders (labels are ignored for self-supervised training)
    options:    FileLoader's; resolution: images are resized to this side (short side, then centre crop) on
                the workers; workers: DataLoader worker processes (0: in this process)
    """

    min_workers = 0

    def __init__(self, root: str | Path, augment: PixelAugment, batch_size: int, **options) -> None:
        super().__init__(augment, batch_size, **options)
        self.dataset = open_image_folder(root, transform=folder_transform(self.resolution))
        check_images(path for path, _ in self.dataset.samples)
        self.count_epoch(len(self.dataset), Path(root))
        self.pixels = view_streams(self.seed, self.rank)

    def iterate(self, start_step: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        per_epoch = self.steps_per_epoch * self.batch_size
        sampler = EpochSampler(
            len(self.dataset), per_epoch, seed=self.seed, rank=self.rank, world=self.world,
            start=start_step * self.batch_size,
        )  # fmt: skip
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.workers > 0,
            drop_last=True,
        )
        for step, (images, _) in enumerate(loader, start=start_step):
            yield self._views(images, step)

    @torch.no_grad()  # not around the yield: grad mode would stay off in the caller while the generator waits
    def _views(self, images: Tensor, step: int) -> tuple[Tensor, Tensor]:
        x = images.to(self.device, non_blocking=True).float().div_(255.0)  # (B, 3, R, R) in [0, 1]
        first, second = (stream.at(step) for stream in self.pixels)
        return self.augment(x, first), self.augment(x, second)


class ImageFolder(datasets.ImageFolder):
    """torchvision's ImageFolder with its samples in the same order, found by `image_dirs`: a folder reached
    twice through symlinks (a link back into its own tree) is walked once, where os.walk(followlinks=True)
    walks it again at every level, 2**depth times."""

    @staticmethod
    def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        samples = []
        for name in sorted(class_to_idx):
            samples += [(os.path.join(where, file), class_to_idx[name])
                        for where, files in image_dirs(os.path.join(directory, name)) for file in files]  # fmt: skip
        return samples


def image_folder(root: str | Path, transform=None) -> ImageFolder:
    """The ImageFolder at root (class subfolders; a class without images is allowed), walked by `image_dirs`."""
    return ImageFolder(str(root), transform=transform, allow_empty=True)


def image_dirs(folder: str | Path) -> Iterator[tuple[str, list[str]]]:
    """(folder path, its image file names sorted) for every folder under `folder` that holds images, lazily, in
    the order torchvision's ImageFolder lists them (folder paths sorted as strings, then names).

    Paths come out of a heap: a subfolder's path sorts after its parent's, so popping the smallest gives the
    sorted order while listing only the folders before the one being read (the first image costs one listing,
    not a walk of the tree). Symlinks to folders are followed, each real folder (st_dev, st_ino) at most once."""
    todo, seen = [str(folder)], set()
    while todo:
        where = heapq.heappop(todo)
        try:
            info = os.stat(where)
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(where) as entries:
                listed = [(entry.name, entry.is_dir()) for entry in entries]
        except OSError:  # unreadable, or gone: os.walk skips it too
            continue
        for name, is_dir in listed:
            if is_dir:
                heapq.heappush(todo, os.path.join(where, name))
        images = sorted(name for name, is_dir in listed if not is_dir and name.lower().endswith(IMG_EXTENSIONS))
        if images:
            yield where, images


def _image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header of the image file `path`, or InputError naming the file: not a regular
    file (a FIFO would block), not an image, or a header claiming more pixels than Pillow's decompression-bomb
    limit (a 20000 x 20000 PNG of a few kB would take 1.2 GB to decode, in every worker that reads it)."""
    check_regular_file(path, what="image", fix="remove or replace it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # PIL warns above half its limit
            with Image.open(path) as image:
                return image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"{path} claims more than {Image.MAX_IMAGE_PIXELS:,} pixels (a decompression bomb, or a huge image): "
            "remove it or resize it"
        ) from None
    except OSError:  # PIL's UnidentifiedImageError included
        raise InputError(f"{path} is not an image Pillow can read: remove or replace it") from None


def check_images(paths: Iterable[str | Path]) -> None:
    """Every file opens as an image (its header only: about 50 us a file, 6 s for ImageNet-100), so that a
    file that is not one stops the run now, in one line, rather than a DataLoader worker mid-epoch."""
    for path in paths:
        _image_size(path)


def folder_resolution(root: str | Path) -> int:
    """The short side of the first image (in ImageFolder's order) under root: the size `--crop 0` means for an
    image folder, so that 32 px images train at 32 px."""
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        for where, names in image_dirs(folder):  # ImageFolder's order; the walk stops at the first image
            return min(_image_size(Path(where) / names[0]))
    raise InputError(f"{root} holds no images in class subfolders: give the path of an ImageFolder")


def folder_transform(size: int):
    """Decoded image -> (3, size, size) uint8: resize the short side, then centre crop."""
    return v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])


def steps_for(images_per_epoch: int, global_batch: int) -> int:
    """Steps in a Continuous-Sampling epoch that matches a reference dataset of that size."""
    return max(1, math.floor(images_per_epoch / global_batch))
