"""Which level carries which factor (mlvgm.zoo.level_factors): the shape-selective rule on hand-made tables, the
flip rates on the shapes world's ground truth (its unused z6 flips nothing, its identity z1 flips the shape),
and the factor classifier as a reader of any generator's factors (mlvgm.zoo.factor_classifier.ReadFactors)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mlvgm.generators import load_generator
from mlvgm.generators.base import labelled, sample_anchors
from mlvgm.zoo.factor_classifier import FactorClassifier, ReadFactors
from mlvgm.zoo.level_factors import flip_rates, shape_selective


def table(rows):
    return pd.DataFrame(rows, columns=["level", "sigma", "flip_shape", "flip_position", "flip_color"])


def test_shape_selective_needs_a_quarter_of_shapes_and_at_most_half_as_many_of_each_other_factor():
    t = table([
        ("a", 1, 0.20, 0.00, 0.00),  # selective in ratio, but under a quarter
        ("a", 2, 0.30, 0.16, 0.00),  # a quarter, but position flips more than half as often
        ("b", 1, 0.25, 0.125, 0.125),  # exactly on both bounds: selective
        ("c", 1, 0.90, 0.10, 0.45),  # exactly half
        ("d", 1, 0.90, 0.10, 0.46),  # over half
    ])  # fmt: skip
    assert shape_selective(t) == {"a": False, "b": True, "c": True, "d": False}


@pytest.fixture(scope="module")
def world():
    return load_generator("shapes:resolution=32")


def test_flip_rates_on_the_shapes_worlds_ground_truth(world):
    t = flip_rates(world, sigmas=(0.5, 4.0), pairs=48, seed=0)
    assert list(t.columns) == ["level", "sigma", "pixel_change", "flip_background", "flip_color", "flip_position",
                               "flip_shape"]  # fmt: skip
    assert len(t) == 6 * 2
    unused = t[t["level"] == "z6 unused"]
    assert (unused[[c for c in t.columns if c.startswith("flip_")]] == 0).all().all()  # its gain is exactly 0
    identity = t[(t["level"] == "z1 identity") & (t["sigma"] == 4.0)].iloc[0]
    assert identity["flip_shape"] > 0.5 and identity["flip_shape"] > identity["flip_background"]


def test_read_factors_is_labelled_and_reads_what_the_classifier_says(world):
    torch.manual_seed(0)
    classifier = FactorClassifier(world.factor_classes).eval()
    reader = ReadFactors(world, classifier)
    assert labelled(reader) and reader.factor_classes == dict(world.factor_classes)
    z = sample_anchors(reader, 300, truncation=2.0, generator=torch.Generator().manual_seed(1))  # 2 chunks of 256
    direct_z = sample_anchors(world, 300, truncation=2.0, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(z, direct_z, strict=True))
    read = reader.factors(z)
    with torch.no_grad():
        direct = classifier.logits(world(z))
    for name in world.factor_classes:
        assert torch.equal(read[name], direct[name].argmax(1))
    t = flip_rates(reader, sigmas=(1.0,), pairs=16, seed=0)
    assert float(t.loc[t["level"] == "z6 unused", "flip_shape"].iloc[0]) == 0.0  # the same image, the same reading


def test_the_shape_head_reads_a_trunk_of_its_own_and_the_features_are_both_trunks(world):
    torch.manual_seed(0)
    classifier = FactorClassifier(world.factor_classes).eval()
    assert classifier.groups == [["shape"], ["position", "color", "background"]] and classifier.feature_dim == 256
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        features, logits = classifier.read(x)
        shared = classifier.trunks[1](x * 2 - 1).mean(dim=(2, 3))
        assert torch.allclose(features[:, 128:], shared) and torch.allclose(
            logits["color"], classifier.heads["color"](shared)
        )
        for p in classifier.trunks[1].parameters():  # the other factors' trunk changes; the shape head does not
            p.add_(1.0)
        assert torch.equal(classifier(x), logits["shape"]) and not torch.allclose(
            classifier.logits(x)["color"], logits["color"]
        )
