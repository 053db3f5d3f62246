"""Data sources: Continuous Sampling and the ImageFolder source are pure functions of the step,
ranks never share data, and T_x draws its randomness per sample."""

from __future__ import annotations

import pytest
import torch

from mlvgm.augment import PixelAugment
from mlvgm.data.exporting import export_dataset
from mlvgm.data.sources import ContinuousSampling, EpochSampler, FileLoader, ImageFolderSource, steps_for
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.strategies.random import RandomViews
from mlvgm.streams import Stream


@pytest.fixture(scope="module")
def g():
    return load_generator("shapes:resolution=32")


def source(g, rank=0, seed=0, augment="simclr"):
    views = RandomViews.uniform(g, [2, 3, 4, 5], sigma=1.0)
    return ContinuousSampling(
        g, views, PixelAugment(augment, 32), 8, seed=seed, rank=rank, steps_per_epoch=10, truncation=2.0
    )


def test_cs_batches_are_a_function_of_the_step(g):
    a, b = source(g), source(g)
    first = a.batch(3)
    assert all(torch.equal(x, y) for x, y in zip(first, b.batch(3), strict=True))
    assert not torch.equal(first[0], a.batch(4)[0])
    assert first[0].shape == (8, 3, 32, 32) and first[1].shape == (8, 3, 32, 32)
    resumed = next(b.iterate(3))
    assert all(torch.equal(x, y) for x, y in zip(first, resumed, strict=True))


def test_cs_ranks_draw_disjoint_latents(g):
    s0, s1 = source(g, rank=0), source(g, rank=1)
    z0 = g.sample_latents(8, truncation=2.0, generator=s0.anchors.at(0))
    z1 = g.sample_latents(8, truncation=2.0, generator=s1.anchors.at(0))
    flat0, flat1 = torch.cat(z0, 1), torch.cat(z1, 1)
    assert torch.cdist(flat0, flat1).min() > 0.5  # no latent vector is shared between ranks
    assert not torch.equal(s0.images(0)[0], s1.images(0)[0])


def test_cs_positive_differs_only_where_views_perturb(g):
    views = RandomViews.uniform(g, ["unused"], sigma=1.0)  # perturbs only z6: positives equal anchors
    cs = ContinuousSampling(g, views, PixelAugment("none", 32, normalize=False), 4, seed=0, steps_per_epoch=1)
    anchor, positive = cs.images(0)
    assert torch.equal(anchor, positive)
    assert not any(p.requires_grad for p in g.parameters()) and not g.training


def test_cs_amp_renders_under_bf16_autocast_and_returns_fp32(g):
    views = RandomViews.uniform(g, ["geometry"], sigma=1.0)
    make = lambda amp: ContinuousSampling(  # noqa: E731
        g, views, PixelAugment("none", 32, normalize=False), 4, seed=0, steps_per_epoch=1, amp=amp
    )
    full, half = make(False).images(0), make(True).images(0)
    for a, b in zip(full, half, strict=True):
        assert b.dtype == torch.float32
        assert not torch.equal(a, b)  # the pattern matmul ran in bf16
        assert float((a - b).abs().mean()) < 0.01


def test_cs_render_chunk_renders_in_pieces_and_gives_the_same_images(g):
    views = RandomViews.uniform(g, [2, 3, 4, 5], sigma=1.0)
    make = lambda chunk: ContinuousSampling(  # noqa: E731
        g, views, PixelAugment("none", 32, normalize=False), 4, seed=0, steps_per_epoch=1, truncation=2.0,
        render_chunk=chunk,
    )  # fmt: skip
    whole, pieces = make(None), make(3)
    sizes = []

    def counted(latents):
        sizes.append(latents[0].shape[0])
        return g(latents)

    pieces.render = counted
    for a, b in zip(whole.images(0), pieces.images(0), strict=True):
        # the same images up to float rounding (the shapes world's matmul blocks by batch size)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert sizes == [3, 3, 2]  # 4 anchors and 4 positives, 3 per forward
    sizes.clear()
    chunk8 = make(8)
    chunk8.render = counted
    chunk8.images(0)
    assert sizes == [8]  # a chunk as large as both halves: one forward
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="render_chunk must be a positive integer"):
            make(bad)


def test_pixel_augment_randomness_is_per_sample_and_keyed():
    augment = PixelAugment("simclr", 24)
    same = torch.rand(1, 3, 32, 32).expand(16, -1, -1, -1).contiguous()  # 16 copies of one image
    out = augment(same, Stream(0, purpose="augment").at(0))
    distinct = {tuple(x.flatten()[:50].tolist()) for x in out}
    assert len(distinct) == 16  # every sample got its own crop, flip and jitter
    again = augment(same, Stream(0, purpose="augment").at(0))
    assert torch.equal(out, again)
    other = augment(same, Stream(0, purpose="augment").at(1))
    assert not torch.equal(out, other)
    state = torch.get_rng_state()
    augment(same, Stream(0, purpose="augment").at(2))
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched


def test_pixel_augment_presets():
    x = torch.rand(4, 3, 32, 32)
    none = PixelAugment("none", 32, normalize=False)
    assert torch.equal(none(x, Stream(0).at(0)), x)
    with pytest.raises(InputError, match="unknown augmentation 'strong'"):
        PixelAugment("strong", 32)
    with pytest.raises(InputError, match="smaller than the crop"):
        PixelAugment("none", 64)(x)


def test_epoch_sampler_splits_each_epoch_across_ranks_and_resumes():
    samplers = [EpochSampler(20, 8, seed=1, rank=r, world=2, start=0) for r in range(2)]
    firsts = [list(_take(s, 8)) for s in samplers]
    assert not set(firsts[0]) & set(firsts[1])  # disjoint within an epoch
    whole = list(_take(EpochSampler(20, 8, seed=1, rank=0, world=2, start=0), 24))
    assert whole[:8] == firsts[0] and whole[8:16] != whole[:8]  # a new permutation every epoch
    resumed = list(_take(EpochSampler(20, 8, seed=1, rank=0, world=2, start=11), 13))
    assert resumed == whole[11:]


def _take(iterable, n):
    it = iter(iterable)
    return [next(it) for _ in range(n)]


def test_imagefolder_source_is_a_function_of_the_step(g, tmp_path):
    root = export_dataset(g, tmp_path / "ds", 64, seed=0)
    make = lambda: ImageFolderSource(root / "train", PixelAugment("no_color", 32), 8, seed=0, resolution=32, workers=0)  # noqa: E731
    src = make()
    assert src.steps_per_epoch == 57 // 8  # 57 train images (64 minus 7 val)
    stream = src.iterate(0)
    batches = [next(stream) for _ in range(9)]  # crosses an epoch boundary
    resumed = next(make().iterate(8))
    assert all(torch.equal(x, y) for x, y in zip(batches[8], resumed, strict=True))
    assert not torch.equal(batches[0][0], batches[0][1])  # two different views of the same images
    assert torch.is_grad_enabled()  # a source must not leave grad mode off in the trainer between batches
    with pytest.raises(InputError, match="does not exist"):
        ImageFolderSource(tmp_path / "nope", PixelAugment("none", 32), 8, seed=0, resolution=32)
    with pytest.raises(InputError, match="fewer than one global batch"):
        ImageFolderSource(root / "val", PixelAugment("none", 32), 8, seed=0, resolution=32)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch size must be a positive integer, got 0"),
        ({"world_size": 0}, "world size must be a positive integer"),
        ({"resolution": 2.5}, "resolution must be a positive integer"),
        ({"rank": -1}, "rank must be an integer >= 0"),
        ({"rank": 2, "world_size": 2}, "rank 2 is not below the world size 2"),
        ({"rank": True}, "rank must be an integer"),
        ({"workers": 0}, "workers must be an integer >= 1, got 0"),
        ({"workers": True}, "workers must be an integer >= 1, got True"),
    ],
)
def test_file_loader_options_are_checked_once_for_every_loader(options, message):
    kwargs = {"batch_size": 8, "seed": 0, "resolution": 32} | options
    with pytest.raises(InputError, match=message):
        FileLoader(PixelAugment("none", 32), **kwargs)


def test_file_loaders_share_the_option_checks(g, tmp_path):
    root = export_dataset(g, tmp_path / "ds", 24, seed=0) / "train"
    # the DataLoader may read in this process; rank and world are held to the same rule as the other loaders
    assert ImageFolderSource(root, PixelAugment("none", 32), 8, seed=0, resolution=32, workers=0).workers == 0
    with pytest.raises(InputError, match="rank 1 is not below the world size 1"):
        ImageFolderSource(root, PixelAugment("none", 32), 8, seed=0, rank=1, resolution=32)
    with pytest.raises(TypeError, match="world"):  # a misspelt option is not swallowed by **options
        ImageFolderSource(root, PixelAugment("none", 32), 8, seed=0, resolution=32, world=2)
    loader = ImageFolderSource(root, PixelAugment("none", 32), 4, seed=3, rank=1, world_size=2, resolution=32)
    assert (loader.seed, loader.rank, loader.world, loader.steps_per_epoch) == (3, 1, 2, 21 // 8)


def test_steps_for():
    assert steps_for(126_789, 256) == 495 and steps_for(10, 256) == 1


def test_an_image_folder_trains_at_its_own_size_unless_crop_says_otherwise(tmp_path):
    """--crop 0 means "the images' own size" for a folder as for a generator: 20 px images give 20 px views."""
    import numpy as np
    from PIL import Image

    from mlvgm.data.sources import folder_resolution
    from mlvgm.probes import folder_probe_set
    from mlvgm.recipe import build_source
    from mlvgm.train_config import TrainConfig

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("a", "b"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(8):
                pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)  # 24 wide, 20 high: short side 20
                Image.fromarray(pixels).save(tmp_path / split / label / f"{i}.png")
    assert folder_resolution(tmp_path / "train") == 20
    for crop, side in ((0, 20), (16, 16)):
        config = TrainConfig(source="imagefolder", data=str(tmp_path / "train"), batch_size=8, workers=0, crop=crop)
        first, second = next(build_source(config, rank=0, world=1, device=torch.device("cpu")).iterate(0))
        assert first.shape == second.shape == (8, 3, side, side)
    images, _, classes = folder_probe_set(tmp_path, "val", size=0)
    assert images.shape == (16, 3, 20, 20) and classes == 2
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(InputError, match="holds no images in class subfolders"):
        folder_resolution(tmp_path / "empty")


# --- the image-folder walk (issue 27) ---------------------------------------------------------------------


def tree(root, paths) -> None:
    from PIL import Image

    for i, rel in enumerate(paths):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8 + i, 9 + i)).save(root / rel)


def test_the_walk_lists_samples_in_torchvisions_order(tmp_path):
    """Same samples, same order as torchvision's ImageFolder (sorted(os.walk) then sorted names), names that
    sort around '/' included: a resumed or compared run sees the same images at the same indices."""
    from torchvision import datasets

    from mlvgm.data.sources import image_folder

    tree(tmp_path, ["b/z.jpg", "b/a.png", "b/x/1.jpg", "b/x-1/2.jpg", "b/x/y/3.JPG", "a/q.jpg", "a/sub/r.jpg"])
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    ours = image_folder(tmp_path)
    theirs = datasets.ImageFolder(str(tmp_path), allow_empty=True)
    assert ours.samples == theirs.samples and ours.classes == theirs.classes
    assert len(ours.samples) == 7


def test_a_symlink_back_into_the_tree_is_walked_once(tmp_path):
    """Two links to itself in a class folder: os.walk(followlinks=True) lists 2**depth copies of each image
    (until paths hit the OS's length limit); the walk visits each real folder once."""
    from mlvgm.data.sources import folder_resolution, image_folder

    tree(tmp_path, ["disc/0.jpg", "disc/deeper/1.jpg"])
    (tmp_path / "disc" / "a").symlink_to(".")
    (tmp_path / "disc" / "deeper" / "up").symlink_to("..")
    (tmp_path / "alias").symlink_to("disc")  # a class that is a link: followed, as torchvision does
    samples = image_folder(tmp_path).samples
    assert [p.replace(str(tmp_path), "") for p, _ in samples] == [
        "/alias/0.jpg", "/alias/deeper/1.jpg", "/disc/0.jpg", "/disc/deeper/1.jpg",
    ]  # fmt: skip
    assert folder_resolution(tmp_path) == 8


def test_the_probe_reads_a_folder_with_links_back_into_itself_once(tmp_path):
    """Evaluation on an image folder walks it as training does: 3 images, not a copy of 1.jpg per link hop
    (torchvision's os.walk(followlinks=True) lists ~40, until the OS's symlink limit)."""
    from mlvgm.probes import folder_probe_set

    tree(tmp_path, ["train/disc/0.jpg", "train/disc/deeper/1.jpg", "train/ring/2.jpg"])
    (tmp_path / "train" / "disc" / "deeper" / "up").symlink_to("..")
    images, labels, classes = folder_probe_set(tmp_path, "train", size=8)
    assert images.shape[0] == 3 and classes == 2 and labels["class"].tolist() == [0, 0, 1]


def test_the_first_image_is_read_without_walking_the_tree(tmp_path, monkeypatch):
    """folder_resolution lists the folders that sort before the first image's, not the whole tree."""
    import os

    from mlvgm.data import sources

    tree(tmp_path, ["c/a/0.jpg", *(f"c/b{i}/x.jpg" for i in range(20))])
    listed = []
    real = os.scandir
    monkeypatch.setattr(sources.os, "scandir", lambda p: listed.append(p) or real(p))
    assert sources.folder_resolution(tmp_path) == 8
    assert listed == [str(tmp_path / "c"), str(tmp_path / "c" / "a")]


def test_a_decompression_bomb_header_and_a_fifo_are_one_line(tmp_path):
    import os
    import struct
    import zlib

    from mlvgm.data.sources import check_images, folder_resolution

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "c" / "huge.png"
    bomb.parent.mkdir()
    for side in (20000, 10000):  # 400 MP: PIL's error; 100 MP: PIL's warning, a traceback-free error here too
        header = chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
        bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IEND", b""))
        with pytest.raises(InputError, match=r"huge\.png claims more than 89,478,485 pixels"):
            folder_resolution(tmp_path)
    bomb.unlink()
    os.mkfifo(tmp_path / "c" / "0.png")
    with pytest.raises(InputError, match=r"0\.png is not a regular file"):
        check_images([tmp_path / "c" / "0.png"])
