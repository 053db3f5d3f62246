"""FFCV: the .beton holds the ImageFolder (pixels within JPEG tolerance, labels, order), writes are
atomic, FFCVSource yields two views of the same images in ImageFolderSource's order, and bad input
fails in one line.

Every image of the test folder carries its index in its green channel (a constant 30 + 5 i), with
gradients in red and blue so that crops differ: a view is identified by its mean green, whatever
the crop, flip, resize or JPEG round trip. numba compiles each FFCV pipeline on its first batch
(seconds), so the tests share three loaders: the read-back loader and one source per mode.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlvgm.augment import IMAGENET_MEAN, IMAGENET_STD, PixelAugment
from mlvgm.data import ffcv as ffcv_module
from mlvgm.data.ffcv import FFCVSource, check_beton, split_augment, write_beton
from mlvgm.data.sources import EpochSampler, ImageFolderSource
from mlvgm.errors import InputError

N, SIDE = 40, 48  # images, pixels


def green_code(i: int) -> int:
    return 30 + 5 * i


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """40 JPEGs in two classes; ImageFolder index i (classes sorted, then files) is image i."""
    root = tmp_path_factory.mktemp("ffcv") / "folder"
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    for i in range(N):
        label = i // (N // 2)
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        pixels = np.stack([y * 5, np.full_like(y, green_code(i)), x * 5], axis=-1).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"class{label}" / f"{i:03d}.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def beton(folder) -> Path:
    return write_beton(folder, folder.parent / "data.beton", workers=1)


def identify(views: torch.Tensor) -> list[int]:
    """(B, 3, S, S) normalised views -> the image index each shows, from its mean green."""
    green = views[:, 1].mean(dim=(1, 2)) * IMAGENET_STD[1] + IMAGENET_MEAN[1]  # (B,) in [0, 1]
    codes = torch.tensor([green_code(i) for i in range(N)], dtype=torch.float32) / 255.0
    return (green[:, None] - codes[None]).abs().argmin(dim=1).tolist()


def test_beton_holds_the_folder_in_order(folder, beton):
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor
    from torchvision.datasets import ImageFolder

    assert check_beton(beton) == N
    threads = torch.get_num_threads()  # FFCV's Loader sets it to its worker count
    loader = Loader(
        str(beton), batch_size=16, num_workers=1, order=OrderOption.SEQUENTIAL, drop_last=False,
        pipelines={"image": [CenterCropRGBImageDecoder((SIDE, SIDE), ratio=1.0), ToTensor()],
                   "label": [IntDecoder(), ToTensor()]},
    )  # fmt: skip
    batches = list(loader)
    ffcv_module._COMPILED.append(loader.code)  # as FFCVSource does: collecting it trips a numba finalizer bug
    torch.set_num_threads(threads)
    images = torch.cat([b[0] for b in batches]).numpy()  # (N, SIDE, SIDE, 3) uint8: full crop, no resize
    labels = torch.cat([b[1] for b in batches]).flatten().tolist()
    reference = ImageFolder(str(folder))
    assert labels == reference.targets == [i // (N // 2) for i in range(N)]
    for i, (path, _) in enumerate(reference.samples):
        literal = np.asarray(Image.open(path).convert("RGB")).astype(np.float32)  # PIL's decode of the source
        error = np.abs(images[i].astype(np.float32) - literal)
        assert error.mean() < 2.0 and error.max() < 40, (i, error.mean(), error.max())  # one more JPEG generation


def test_resolution_caps_the_longer_side(folder, tmp_path):
    from ffcv.reader import Reader

    out = write_beton(folder, tmp_path / "small.beton", resolution=24, write_mode="raw", workers=1)
    meta = Reader(str(out)).metadata["f0"]  # the image column (FFCV leaves the columns unnamed)
    assert (meta["height"] == 24).all() and (meta["width"] == 24).all() and (meta["mode"] == 1).all()  # 1: raw


@pytest.fixture
def three_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


def test_ffcv_mode_makes_two_crops_of_the_same_images(beton, three_threads):
    source = FFCVSource(beton, PixelAugment("no_color", 32), 8, seed=0, resolution=SIDE, workers=1, mode="ffcv")
    assert source.steps_per_epoch == N // 8
    stream = source.iterate(0)
    seen = []
    for step in range(source.steps_per_epoch):
        a, b = next(stream)
        assert a.shape == b.shape == (8, 3, 32, 32) and a.dtype == b.dtype == torch.float32
        assert a.device == b.device == torch.device("cpu") and torch.is_grad_enabled()  # grad mode left alone
        expected = source.indices(0)[step * 8 : (step + 1) * 8].tolist()
        assert identify(a) == identify(b) == expected  # both views show the batch's images, in order
        assert (a - b).abs().mean() > 0.05  # independent crops and flips
        seen += expected
    stream.close()
    assert torch.get_num_threads() == three_threads  # FFCV set it to its 1 worker; the source put it back
    assert sorted(seen) == list(range(N))  # one epoch reads every image once
    unit = a * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    assert unit.min() > -0.01 and unit.max() < 1.01  # ImageNet-normalised [0, 1] pixels


def test_device_mode_reads_what_imagefolder_source_reads_and_resumes(folder, beton):
    augment = PixelAugment("none", 32)
    source = FFCVSource(beton, augment, 8, seed=3, resolution=40, workers=1, mode="device")
    baseline = ImageFolderSource(folder, augment, 8, seed=3, resolution=40, workers=0)
    ours, theirs = source.iterate(0), baseline.iterate(0)
    steps = [next(ours) for _ in range(7)]  # crosses the epoch boundary at step 5
    for a, b in steps:
        assert torch.equal(a, b)  # preset "none": both views are the centre crop
    for step, ((a, _), (x, _)) in enumerate(zip(steps, (next(theirs) for _ in range(7)), strict=False)):
        assert identify(a) == identify(x)  # same images at every step
        assert (a - x).abs().mean() < 0.1, step  # resized by OpenCV (area) vs torchvision (bilinear)
    epoch0 = [i for a, _ in steps[:5] for i in identify(a)]
    assert sorted(epoch0) == list(range(N)) and epoch0 == source.indices(0).tolist()
    resumed = source.iterate(6)  # epoch 1's second batch, without decoding its first
    assert torch.equal(next(resumed)[0], steps[6][0])
    for stream in (resumed, ours, theirs):
        stream.close()


def test_order_is_reproducible_and_ranks_are_disjoint(beton):
    def make(rank, seed=5):
        return FFCVSource(beton, PixelAugment("none", 32), 4, seed=seed, rank=rank, world_size=3, resolution=SIDE)

    sources = [make(r) for r in range(3)]  # no batch is read: the loader is built on first use
    assert all(s.steps_per_epoch == N // 12 for s in sources)
    for epoch in (0, 1):
        shards = [set(s.indices(epoch).tolist()) for s in sources]
        assert all(len(shard) == 12 for shard in shards)
        assert not (shards[0] & shards[1] or shards[0] & shards[2] or shards[1] & shards[2])
    assert np.array_equal(make(1).indices(2), sources[1].indices(2))  # a new run, the same order
    assert not np.array_equal(sources[0].indices(0), sources[0].indices(1))  # reshuffled every epoch
    assert not np.array_equal(make(0, seed=6).indices(0), sources[0].indices(0))
    sampler = EpochSampler(N, 12, seed=5, rank=2, world=3, start=0)  # ImageFolderSource's order
    assert sources[2].indices(1).tolist() == [next(it) for it in [iter(sampler)] for _ in range(24)][12:]


def test_split_augment_gives_geometry_to_ffcv_and_colour_to_the_device():
    simclr = split_augment(PixelAugment("simclr", 32))
    assert simclr.crop == ((0.2, 1.0), (0.75, 4 / 3)) and simclr.flip == 0.5 and simclr.random
    assert [type(op).__name__ for op in simclr.device.ops.children()] == ["ColorJitter", "RandomGrayscale"]
    assert simclr.device.normalize is not None
    none = split_augment(PixelAugment("none", 32, normalize=False))
    assert none.crop is None and none.flip == 0.0 and not none.random and none.device.normalize is None
    assert list(none.device.ops.children()) == []
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(none.device(x), x)  # nothing left to do on the device
    # the device part goes where the caller put T_x (on a GPU, its normalisation's buffers were left on the CPU)
    doubled = split_augment(PixelAugment("no_color", 32).to(torch.float64)).device
    assert doubled.normalize.mean.dtype == torch.float64 and doubled(x.double()).dtype == torch.float64


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def test_a_corrupt_image_fails_the_write_atomically(folder, tmp_path):
    broken = tmp_path / "broken"
    for path in folder.rglob("*.jpg"):
        (broken / path.parent.name).mkdir(parents=True, exist_ok=True)
        (broken / path.parent.name / path.name).write_bytes(path.read_bytes())
    (broken / "class1" / "zz.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "data.beton"
    out.write_bytes(b"previous")
    with pytest.raises(InputError, match=r"cannot read image .*zz\.jpg") as error:
        write_beton(broken, out, workers=2, overwrite=True)
    assert "\n" not in str(error.value)
    assert out.read_bytes() == b"previous" and _partials(tmp_path) == []


def test_a_dying_writer_process_fails_the_write_without_hanging(folder, tmp_path, monkeypatch):
    read = ffcv_module._FolderImages.__getitem__

    def dies_on_the_sixth(self, index):
        if index == 5:
            os._exit(3)  # as an out-of-memory kill would: no exception, no cleanup
        return read(self, index)

    monkeypatch.setattr(ffcv_module._FolderImages, "__getitem__", dies_on_the_sixth)  # inherited by the forks
    with pytest.raises(RuntimeError, match="writer process died"):
        write_beton(folder, tmp_path / "data.beton", workers=1)
    assert not (tmp_path / "data.beton").exists() and _partials(tmp_path) == []


def test_bad_input_fails_in_one_line(folder, beton, tmp_path, monkeypatch):
    (tmp_path / "empty" / "class0").mkdir(parents=True)
    text = tmp_path / "notes.beton"
    text.write_text("not a beton\n" * 10)
    truncated = tmp_path / "truncated.beton"
    truncated.write_bytes(beton.read_bytes()[: beton.stat().st_size // 2])
    cases = [
        (lambda: write_beton(tmp_path / "nope", tmp_path / "a.beton"), "does not exist"),
        (lambda: write_beton(tmp_path / "empty", tmp_path / "a.beton"), "has no images"),
        (lambda: write_beton(folder, beton), "already exists"),
        (lambda: write_beton(folder, tmp_path / "a.ffcv"), "must end in .beton"),
        (lambda: write_beton(folder, tmp_path / "a.beton", quality=0), "quality"),
        (lambda: write_beton(folder, tmp_path / "a.beton", write_mode="proportion"), "write mode"),
        (lambda: check_beton(tmp_path / "missing.beton"), "does not exist"),
        (lambda: check_beton(text), "not a complete FFCV .beton"),
        (lambda: check_beton(truncated), "truncated"),
        (lambda: FFCVSource(beton, PixelAugment("none", 32), 8, seed=0, rank=2, world_size=2, resolution=32), "rank"),
        (lambda: FFCVSource(beton, PixelAugment("none", 32), 8, seed=0, resolution=24), "smaller than the crop"),
        (lambda: FFCVSource(beton, PixelAugment("none", 32), 41, seed=0, resolution=32), "fewer than one global"),
        (lambda: FFCVSource(beton, PixelAugment("none", 32), 8, seed=0, resolution=32, mode="dali"), "mode"),
        (lambda: FFCVSource(beton, PixelAugment("none", 32), 8, seed=0, resolution=32, workers=10_000), "numba"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message) as error:
            call()
        assert "\n" not in str(error.value), message
    assert not (tmp_path / "a.beton").exists() and _partials(tmp_path) == []

    monkeypatch.setitem(sys.modules, "ffcv.writer", None)  # as if ffcv were not installed
    with pytest.raises(InputError, match=r"pip install mlvgm\[loaders\]"):
        write_beton(folder, tmp_path / "a.beton")


def test_export_cli_writes_betons_of_both_splits(tmp_path):
    import json

    from mlvgm.data.export import main

    out = tmp_path / "shapes"
    main(["--generator", "shapes:resolution=32", "--n", "30", "--out", str(out), "--format", "ffcv"])
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert check_beton(out / "train.beton") == counts["train"] > 0
    assert check_beton(out / "val.beton") == counts["val"] > 0
