"""View strategies T_z: none and random, against numpy literals and scipy; the Figure-4 sweep and its CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.base import MLVGM
from mlvgm.streams import Stream
from mlvgm.views import LevelNoise, NoViews, RandomViews, level_sweep, main


@pytest.fixture(scope="module")
def g():
    return load_generator("shapes")


class Grouped(MLVGM):
    """A toy generator with groups and unequal level sizes."""

    level_dims = (4, 4, 4, 4, 6)
    resolution = 8
    level_names = ("a", "b", "c", "d", "e")
    groups = {"first": (0, 1), "second": (2, 3)}

    def forward(self, latents):
        z = torch.cat(latents, dim=1)
        return torch.sigmoid(z.sum(dim=1))[:, None, None, None].expand(-1, 3, 8, 8)


def z_of(g, n, seed=0):
    return g.sample_latents(n, truncation=2.0, generator=Stream(seed, purpose="anchors").at(0))


def test_none_returns_the_anchors(g):
    z = z_of(g, 5)
    views = NoViews(g)(z)
    assert all(torch.equal(a, b) for a, b in zip(views.positives, z, strict=True))
    assert torch.equal(views.norms, torch.zeros(5, 6))


def test_random_perturbs_only_the_chosen_levels_and_norms_are_literal(g):
    z = z_of(g, 64)
    strategy = RandomViews(g, {2: LevelNoise(sigma=0.5), "color": LevelNoise(sigma=1.0, t=1.0)})
    views = strategy(z, Stream(0, purpose="views").at(0))
    for i in range(6):
        same = torch.equal(views.positives[i], views.anchors[i])
        assert same == (i not in (1, 2)), f"level {i + 1}"
    pos = np.concatenate([p.numpy() for p in views.positives], axis=1).astype(np.float64)
    anc = np.concatenate([a.numpy() for a in views.anchors], axis=1).astype(np.float64)
    literal = np.zeros((64, 6))
    for b in range(64):
        for i in range(6):
            literal[b, i] = np.sqrt(sum((pos[b, 8 * i + j] - anc[b, 8 * i + j]) ** 2 for j in range(8)))
    np.testing.assert_allclose(views.norms.numpy(), literal, atol=1e-5)


def test_random_perturbation_follows_the_per_level_truncated_normal(g):
    strategy = RandomViews(g, {1: LevelNoise(sigma=0.3, mu=0.1, t=2.0), 4: LevelNoise(sigma=2.0, t=0.5)})
    w = strategy.perturbation(20_000, generator=Stream(1, purpose="views").at(0)).double()
    level1, level4 = w[:, 0:8].reshape(-1).numpy(), w[:, 24:32].reshape(-1).numpy()
    assert stats.kstest(level1, stats.truncnorm(a=-2, b=2, loc=0.1, scale=0.3).cdf).pvalue > 1e-3
    assert stats.kstest(level4, stats.truncnorm(a=-0.5, b=0.5, loc=0.0, scale=2.0).cdf).pvalue > 1e-3
    assert torch.equal(w[:, 8:24], torch.zeros(20_000, 16)) and torch.equal(w[:, 32:], torch.zeros(20_000, 16))


def test_views_are_reproducible_per_step(g):
    z = z_of(g, 8)
    strategy = RandomViews.uniform(g, [2, 3, 4, 5], sigma=1.0)
    a = strategy(z, Stream(3, purpose="views").at(10)).positives
    b = strategy(z, Stream(3, purpose="views").at(10)).positives
    c = strategy(z, Stream(3, purpose="views").at(11)).positives
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_groups_and_names_resolve():
    toy = Grouped()
    strategy = RandomViews(toy, {"first": LevelNoise(sigma=1.0), "e": LevelNoise(sigma=0.1)})
    assert sorted(strategy.noise) == [0, 1, 4]
    z = toy.sample_latents(4, generator=torch.Generator().manual_seed(0))
    views = strategy(z, torch.Generator().manual_seed(1))
    assert views.norms.shape == (4, 5) and bool((views.norms[:, [2, 3]] == 0).all())


@pytest.mark.parametrize(
    ("noise", "match"),
    [
        ({7: LevelNoise(sigma=1.0)}, "level 7 is out of range"),
        ({0: LevelNoise(sigma=1.0)}, "level 0 is out of range"),
        ({"nope": LevelNoise(sigma=1.0)}, "unknown level 'nope'"),
        ({}, "at least one level"),
        ({1: 0.5}, "must be a LevelNoise"),
        ({1: LevelNoise(sigma=1.0), "identity": LevelNoise(sigma=2.0)}, "two different noises"),
    ],
)
def test_bad_view_configs(g, noise, match):
    with pytest.raises(InputError, match=match):
        RandomViews(g, noise)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"sigma": -0.1}, "sigma must be >= 0"), ({"sigma": 1.0, "t": 0.0}, "t must be > 0")]
)
def test_bad_level_noise(kwargs, match):
    with pytest.raises(InputError, match=match):
        LevelNoise(**kwargs)


def test_level_sweep_adds_the_same_vector_one_level_at_a_time(g):
    z = z_of(g, 3)
    w = torch.linspace(-1, 1, 8)
    grid = level_sweep(g, z, w)
    assert grid.images.shape == (3, 7, 3, 64, 64)
    assert grid.labels == [
        "anchor",
        "z1 identity",
        "z2 geometry",
        "z3 color",
        "z4 background",
        "z5 texture",
        "z6 unused",
    ]
    assert torch.equal(grid.images[:, 0], g(z))
    for column in range(1, 7):
        expected = [x.clone() for x in z]
        expected[column - 1] = expected[column - 1] + w
        assert torch.equal(grid.images[:, column], g(expected))
    assert torch.equal(grid.images[:, 6], grid.images[:, 0])  # z6 is unused
    assert bool((grid.max_abs_diff[:, 1:6] > 0).all()) and bool((grid.max_abs_diff[:, 6] == 0).all())


def test_level_sweep_needs_equal_level_sizes():
    toy = Grouped()
    z = toy.sample_latents(2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match="equal size"):
        level_sweep(toy, z, torch.ones(4), columns=[1, 5])
    grid = level_sweep(toy, z, torch.ones(4), columns=["first", "second"])
    assert grid.labels == ["anchor", "first", "second"]


def test_cli_writes_the_grid_and_its_provenance(tmp_path, capsys):
    out = tmp_path / "grid.png"
    main(["--out", str(out), "--anchors", "2", "--levels", "1,geometry,6", "--device", "cpu"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads(out.with_suffix(".json").read_text())
    assert list(record["columns"]) == ["anchor", "z1 identity", "z2 geometry", "z6 unused"]
    assert record["columns"]["z6 unused"] == 0.0 and record["columns"]["z2 geometry"] > 0
    assert {"git", "hardware", "software", "config"} <= set(record)
    assert "z6 unused" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.json", "grid.png"]  # no temp files left
