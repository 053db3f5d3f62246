"""DALISource: the views' shapes and statistics, the same images per step as ImageFolderSource, ranks split
each epoch, per-sample flips and grayscale at their rates, and one-line errors. DALI runs on one CPU thread."""

from __future__ import annotations

import gc
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("nvidia.dali")

from mlvgm.augment import IMAGENET_MEAN, IMAGENET_STD, PixelAugment
from mlvgm.data.dali import DALISource
from mlvgm.data.sources import EpochSampler, ImageFolderSource
from mlvgm.errors import InputError

N, SIDE, STRIP = 40, 48, 16  # images, their side in pixels, width of the inverted strip on the left
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def colour(i: int) -> tuple[int, int, int]:
    """Image i's flat colour: its red level names it (30, 35, ... 225, far apart for JPEG)."""
    return 30 + 5 * i, 200 - 4 * i, 60 + (37 * i) % 120


def write_jpeg(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """N images of one flat colour each, the left STRIP columns inverted (asymmetric), in 2 classes."""
    root = tmp_path_factory.mktemp("dali") / "flat"
    for i in range(N):
        array = np.empty((SIDE, SIDE, 3), np.uint8)
        array[:] = colour(i)
        array[:, :STRIP] = 255 - array[:, :STRIP]
        write_jpeg(root / f"class{i % 2}" / f"{i:03d}.jpg", array)
    return root


@pytest.fixture(scope="module")
def ramps(tmp_path_factory):
    """16 copies of a red ramp rising left to right on constant green and blue: luma rises to the right."""
    root = tmp_path_factory.mktemp("dali") / "ramps"
    array = np.empty((SIDE, SIDE, 3), np.uint8)
    array[..., 0] = np.linspace(20, 240, SIDE).round().astype(np.uint8)
    array[..., 1], array[..., 2] = 100, 50
    for i in range(16):
        write_jpeg(root / f"class{i % 2}" / f"{i:03d}.jpg", array)
    return root


def source(root, augment="none", batch_size=8, **kwargs) -> DALISource:
    if isinstance(augment, str) and augment != "none":
        augment = PixelAugment(augment, 32)
    kwargs = {"seed": 0, "resolution": SIDE, "workers": 1} | kwargs
    return DALISource(root, augment, batch_size, **kwargs)


def take(stream, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [next(stream) for _ in range(n)]


def pixels(views: torch.Tensor) -> torch.Tensor:
    """Normalised views (B, 3, S, S) -> 0-255 levels (B, 3, S, S)."""
    return (views * STD + MEAN) * 255.0


def ids(views: torch.Tensor) -> list[int]:
    """Which image each uncropped view shows, from the red level right of the strip."""
    red = pixels(views)[:, 0, :, -8:].mean(dim=(1, 2))  # (B,)
    return ((red - 30.0) / 5.0).round().int().tolist()


def test_views_shapes_dtype_device_and_independent_draws(folder):
    simclr = source(folder, "simclr")
    a, b = next(simclr.iterate(0))
    assert a.shape == b.shape == (8, 3, 32, 32) and a.dtype == b.dtype == torch.float32
    assert a.device == b.device == torch.device("cpu")
    assert (a - b).abs().flatten(1).amax(1).min() > 0.1  # every pair: two different views of one image
    again = next(simclr.iterate(0))
    assert torch.equal(a, again[0]) and torch.equal(b, again[1])  # a start step always gives the same batch
    by_name = source(folder, "none", resolution=40)  # a preset name crops at the resolution
    assert next(by_name.iterate(0))[0].shape == (8, 3, 40, 40)


@pytest.mark.parametrize("resolution, tolerance", [(SIDE, 2.0), (40, 3.0)])  # in 0-255 levels
def test_none_preset_matches_a_numpy_reference(folder, resolution, tolerance):
    dali = source(folder, PixelAugment("none", 32), resolution=resolution)
    view, _ = next(dali.iterate(0))
    sampler = iter(EpochSampler(N, N, seed=0, rank=0, world=1, start=0))
    mean, std = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]
    offset = (resolution - 32) // 2
    for k in range(8):
        image = Image.open(dali.files[next(sampler)]).convert("RGB")
        image = image.resize((resolution, resolution), Image.BILINEAR)  # antialiased when shrinking, as DALI
        x = np.asarray(image, np.float64).transpose(2, 0, 1)[:, offset : offset + 32, offset : offset + 32]
        reference = (x / 255.0 - mean) / std  # (3, 32, 32)
        assert np.abs(view[k].double().numpy() - reference).max() < tolerance / 255.0 / min(IMAGENET_STD)


def test_steps_per_epoch_drops_the_last_partial_batch(folder):
    assert source(folder, batch_size=8).steps_per_epoch == 5
    assert source(folder, batch_size=16).steps_per_epoch == 2  # 40 // 16
    assert source(folder, batch_size=8, rank=1, world_size=3).steps_per_epoch == 1  # 40 // 24


def test_an_epoch_reads_every_image_once_in_imagefolder_source_order(folder):
    dali = source(folder)
    batches = take(dali.iterate(0), 8)  # crosses into the second epoch
    steps = [ids(a) for a, _ in batches]
    assert sorted(i for step in steps[:5] for i in step) == list(range(N))
    baseline = ImageFolderSource(folder, PixelAugment("none", 32), 8, seed=0, resolution=SIDE, workers=0)
    assert steps == [ids(a) for a, _ in take(baseline.iterate(0), 8)]  # the same images at every step
    resumed = next(source(folder).iterate(7))
    assert ids(resumed[0]) == steps[7]  # resume is exact for images, mid-epoch
    assert ids(batches[0][0]) == ids(batches[0][1])  # both views show the same images


def test_ranks_split_each_epoch(folder):
    ranks = [source(folder, rank=r, world_size=2) for r in range(2)]
    assert ranks[0].steps_per_epoch == 2  # 40 // 16
    seen = [{i for a, _ in take(s.iterate(0), 2) for i in ids(a)} for s in ranks]
    assert len(seen[0]) == len(seen[1]) == 16 and not seen[0] & seen[1]


def test_flip_jitter_and_grayscale_are_drawn_per_sample_at_their_rates(ramps):
    views = torch.cat([torch.cat(pair) for pair in take(source(ramps, "simclr", batch_size=16).iterate(0), 8)])
    x = pixels(views)  # (256, 3, 32, 32)
    luma = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1).mean(1)  # (256, 32) per column
    flipped = (luma[:, :16].mean(1) > luma[:, 16:].mean(1)).float().mean().item()
    gray = ((x.amax(1) - x.amin(1)).amax(dim=(1, 2)) < 3.0).float().mean().item()  # R = G = B everywhere
    green, blue = (x[:, 1] - 100.0).abs().amax((1, 2)), (x[:, 2] - 50.0).abs().amax((1, 2))
    untouched = ((green < 3.0) & (blue < 3.0)).float().mean().item()  # neither jitter (p 0.8) nor grayscale
    # 256 views: binomial standard deviations 0.031, 0.025 and 0.023; bounds at about 4 of them
    assert abs(flipped - 0.5) < 0.125 and abs(gray - 0.2) < 0.1 and abs(untouched - 0.2 * 0.8) < 0.09
    plain = pixels(next(source(ramps, "none").iterate(0))[0])
    assert (plain[:, 0, :, :16].mean((1, 2)) < plain[:, 0, :, 16:].mean((1, 2))).all()  # 'none' never flips


def test_bad_folders_fail_with_one_line(folder, tmp_path):
    cases = {
        "does not exist": tmp_path / "nope",
        "is not an ImageFolder": (tmp_path / "flat").mkdir() or tmp_path / "flat",
        "holds no images": (tmp_path / "empty" / "class0").mkdir(parents=True) or tmp_path / "empty",
    }
    for match, root in cases.items():
        with pytest.raises(InputError, match=match) as error:
            source(root)
        assert "\n" not in str(error.value)
    with pytest.raises(InputError, match=r"has 40 images, fewer than one global batch \(48\)"):
        source(folder, batch_size=24, world_size=2)
    with pytest.raises(InputError, match="unknown augmentation 'strong'"):
        source(folder, "strong")
    with pytest.raises(InputError, match="larger than the resolution"):
        source(folder, PixelAugment("none", 32), resolution=24)


@pytest.mark.parametrize("damage", ["truncated", "not an image", "gif"])
def test_a_corrupt_jpeg_is_named(folder, tmp_path, damage, capfd):
    """The bad file is named in one line. DALI's decoder also prints its own "[ERROR] [jpeg_parser] ..." to
    the process's stderr, from its threads and at teardown: capfd keeps that inside this test."""
    root = tmp_path / "corrupt"
    good = sorted(folder.rglob("*.jpg"))[:15]  # 15 + 1 bad: two full batches, every file read
    for path in good:
        (root / path.parent.name).mkdir(parents=True, exist_ok=True)
        (root / path.parent.name / path.name).write_bytes(path.read_bytes())
    bad = root / good[0].parent.name / "bad.jpg"
    if damage == "gif":  # PIL reads it, DALI does not
        Image.open(good[0]).save(bad, format="GIF")
    else:
        bad.write_bytes(good[0].read_bytes()[:300] if damage == "truncated" else b"not a jpeg")
    dali = source(root)
    with pytest.raises(InputError, match=re.escape(str(bad))) as error:
        take(dali.iterate(0), dali.steps_per_epoch)
    assert "\n" not in str(error.value)
    del dali
    gc.collect()  # the pipeline's threads end here, while capfd still holds their output
    capfd.readouterr()


def test_missing_dali_says_how_to_install(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # makes `import nvidia.dali` raise ImportError
    with pytest.raises(InputError, match=re.escape("pip install mlvgm[loaders]")):
        source(folder)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_cuda_device_without_cuda_is_an_input_error(folder):
    with pytest.raises(InputError, match="CUDA is not available"):
        source(folder, device="cuda")


@pytest.mark.gpu
def test_gpu_pipeline_decodes_on_the_device_like_the_cpu(folder):
    cpu, _ = next(source(folder).iterate(0))
    gpu, _ = next(source(folder, device="cuda").iterate(0))
    assert gpu.device.type == "cuda" and gpu.shape == (8, 3, SIDE, SIDE) and gpu.dtype == torch.float32
    assert (gpu.cpu() - cpu).abs().max() < 6.0 / 255.0 / min(IMAGENET_STD)  # nvJPEG vs libjpeg-turbo
    a, b = next(source(folder, "simclr", device="cuda").iterate(0))
    assert a.device.type == b.device.type == "cuda" and a.shape == (8, 3, 32, 32) and not torch.equal(a, b)
