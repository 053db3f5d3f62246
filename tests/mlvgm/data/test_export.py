"""Dataset export: round trip through ImageFolder and the CSV, reproducibility, atomicity, bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.transforms.functional import pil_to_tensor

from mlvgm.data import exporting as export_module
from mlvgm.data.export import CHUNK, export_dataset
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.streams import Stream


@pytest.fixture(scope="module")
def g():
    return load_generator("shapes:resolution=32")


@pytest.fixture(scope="module")
def dataset(g, tmp_path_factory):
    return export_dataset(g, tmp_path_factory.mktemp("export") / "ds", 300, seed=3, quality=95, spec="shapes")


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.jpg"))}


def test_round_trip_through_imagefolder_and_csv(g, dataset):
    table = pd.read_csv(dataset / "factors.csv")
    assert len(table) == 300 and list(table["index"]) == list(range(300))
    assert (table["split"] == "val").sum() == 30  # floor(300 * 0.1), spread evenly
    for split in ("train", "val"):
        folder = ImageFolder(str(dataset / split), allow_empty=True)
        assert folder.classes == sorted(g.shape_classes)
        assert len(folder) == (table["split"] == split).sum()
        for path, target in folder.samples[:50]:
            row = table[table["path"] == str(Path(path).relative_to(dataset))].iloc[0]
            assert folder.classes[target] == row["label"] == g.shape_classes[row["shape"]]

    # the CSV holds the factors of the latents the stream gives (image i = chunk i // CHUNK, row i % CHUNK)
    latents = g.sample_latents(CHUNK, truncation=2.0, generator=Stream(3, purpose="export").at(0))
    factors = g.factors(latents)
    for name in ("shape", "position", "color", "background"):
        assert table[name].tolist()[:CHUNK] == factors[name].tolist()
    scene = g.scene(latents)
    assert table["hue"].tolist()[:CHUNK] == pytest.approx(scene["hue"].tolist(), abs=1e-6)

    # the JPEGs are the rendered images, up to compression
    images = g(latents)
    for i in (0, 17, 255):
        decoded = pil_to_tensor(Image.open(dataset / table.loc[i, "path"])).float() / 255.0
        assert float((decoded - images[i]).abs().mean()) < 0.02


def test_manifest_records_counts_and_provenance(dataset):
    import json

    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 270, "val": 30}
    assert manifest["config"]["n"] == 300 and manifest["config"]["seed"] == 3
    assert {"git", "hardware", "software"} <= set(manifest)


def test_reproducible_by_seed(g, dataset, tmp_path):
    again = export_dataset(g, tmp_path / "again", 300, seed=3, quality=95)
    assert digest(again) == digest(dataset)
    other = export_dataset(g, tmp_path / "other", 300, seed=4, quality=95)
    assert digest(other) != digest(dataset)


def test_existing_dataset_is_never_overwritten_without_asking(g, tmp_path):
    out = tmp_path / "ds"
    export_dataset(g, out, 10, seed=0)
    before = digest(out)
    with pytest.raises(InputError, match="already exists"):
        export_dataset(g, out, 10, seed=1)
    assert digest(out) == before
    export_dataset(g, out, 10, seed=1, overwrite=True)
    assert digest(out) != before and sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_a_crash_leaves_nothing_half_written(g, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = export_module.encode_jpeg

    def failing(images, quality):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real(images, quality)

    monkeypatch.setattr(export_module, "encode_jpeg", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_dataset(g, tmp_path / "ds", 2 * CHUNK, seed=0)
    assert list(tmp_path.iterdir()) == []  # neither the dataset nor its staging folder

    # the same when replacing: the old dataset survives a failed overwrite
    monkeypatch.setattr(export_module, "encode_jpeg", real)
    export_dataset(g, tmp_path / "ds", 5, seed=0)
    before = digest(tmp_path / "ds")
    calls["n"] = 0
    monkeypatch.setattr(export_module, "encode_jpeg", failing)
    with pytest.raises(RuntimeError):
        export_dataset(g, tmp_path / "ds", 2 * CHUNK, seed=1, overwrite=True)
    assert digest(tmp_path / "ds") == before and [p.name for p in tmp_path.iterdir()] == ["ds"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be a positive integer"),
        ({"n": 5, "val_fraction": 1.0}, r"val fraction must be in \[0, 1\)"),
        ({"n": 5, "quality": 101}, "JPEG quality"),
    ],
)
def test_bad_arguments(g, tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        export_dataset(g, tmp_path / "ds", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_missing_parent_folders_are_created(g, tmp_path):
    out = export_dataset(g, tmp_path / "missing" / "ds", 5, val_fraction=0.0)
    assert (out / "manifest.json").exists() and [p.name for p in (tmp_path / "missing").iterdir()] == ["ds"]


def test_generators_without_factors_are_refused(tmp_path):
    class NoFactors(torch.nn.Module):
        level_dims = (2,)
        resolution = 8

    with pytest.raises(InputError, match="no ground-truth factors"):
        export_dataset(NoFactors(), tmp_path / "ds", 5)
