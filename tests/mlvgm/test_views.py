"""View strategies T_z: none and random, against numpy literals and scipy; the Figure-4 sweep and its CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.base import MLVGM
from mlvgm.grid import main
from mlvgm.streams import Stream
from mlvgm.views import LevelNoise, NoViews, RandomViews, level_sweep


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


@pytest.mark.parametrize("impl", ["torch", "compiled"])
def test_a_stream_runs_the_chosen_kernel_and_every_kernel_draws_the_same_views(g, impl, monkeypatch):
    """RandomViews hands Philox draws to mlvgm.kernels.perturb with its impl (no silent substitution), and the
    implementations agree; a torch.Generator source takes the reference ops."""
    import mlvgm.strategies.random as strategy

    calls = []
    real = strategy.perturb
    monkeypatch.setattr(strategy, "perturb", lambda *a, **k: calls.append(k["impl"]) or real(*a, **k))
    z = z_of(g, 16)
    ours = RandomViews.uniform(g, [2, 3], sigma=0.7, impl=impl)(z, Stream(4, purpose="views").at(2))
    reference = RandomViews.uniform(g, [2, 3], sigma=0.7, impl="torch")(z, Stream(4, purpose="views").at(2))
    assert calls == [impl, "torch"]
    for a, b in zip(ours.positives, reference.positives, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.norms, reference.norms, rtol=1e-5, atol=1e-5)
    RandomViews.uniform(g, [2], sigma=0.7, impl=impl)(z, torch.Generator().manual_seed(0))
    assert len(calls) == 2


def test_multi_level_option_gates_levels_and_draws_sigma_from_its_range(g):
    """p: the share of (sample, level) pairs perturbed; sigma_max: each pair's std within [sigma, sigma_max]."""
    strategy = RandomViews.uniform(g, [2, 3, 4, 5], sigma=0.5, sigma_max=2.0, p=0.3, t=None)
    n = 4000
    w = strategy.perturbation(n, generator=Stream(9, purpose="views").at(0)).reshape(n, 6, 8).double()
    touched = w.abs().amax(dim=2) > 0  # (n, 6)
    assert not touched[:, [0, 5]].any()
    share = touched[:, 1:5].double().mean().item()
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / (4 * n)), share
    rms = w[:, 1:5].pow(2).mean(dim=2).sqrt()[touched[:, 1:5]]  # ~ the pair's sigma (8 dims: noisy)
    q25, q50, q75 = torch.quantile(rms, torch.tensor([0.25, 0.5, 0.75], dtype=rms.dtype)).tolist()
    assert q25 < 1.1 < 1.3 < q75 and 1.0 < q50 < 1.5  # sigma ~ U(0.5, 2): quartiles 0.875, 1.25, 1.625


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
    ("kwargs", "match"),
    [
        ({"sigma": -0.1}, "sigma must be >= 0"),
        ({"sigma": 1.0, "t": 0.0}, "t must be > 0"),
        ({"sigma": 1.0, "sigma_max": 0.5}, "sigma_max must be >= sigma"),
        ({"sigma": 1.0, "p": 1.5}, r"p must be in \[0, 1\]"),
    ],
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


def test_level_sweep_gives_smaller_levels_the_leading_coordinates_of_one_vector():
    toy = Grouped()
    z = toy.sample_latents(2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match="at least as long as the largest level"):
        level_sweep(toy, z, torch.ones(4), columns=[1, 5])
    w = torch.arange(6.0)
    grid = level_sweep(toy, z, w, columns=[1, 5, "second"])
    assert grid.labels == ["anchor", "z1 a", "z5 e", "second"]
    first = [x.clone() for x in z]
    first[0] = first[0] + w[:4]  # z1 has 4 coordinates: it takes w's first 4
    assert torch.equal(grid.images[:, 1], toy(first))
    last = [x.clone() for x in z]
    last[4] = last[4] + w
    assert torch.equal(grid.images[:, 2], toy(last))


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


def test_learned_views_apply_the_walkers_of_the_chosen_levels(g, tmp_path):
    """Each chosen unit's levels are replaced by its walker's output, the rest stay; norms are literal;
    levels that do not make whole units are refused; walkers load from the file quantify writes."""
    from mlvgm.views import LearnedViews
    from mlvgm.walkers import LevelWalkers

    walkers = LevelWalkers(g, [1, [2, 3], 4], seed=2)
    with torch.no_grad():
        for p in walkers.parameters():
            p.mul_(50)
    z = z_of(g, 8)
    views = LearnedViews(g, walkers, levels=[2, 3, 4])(z)
    for i in range(6):
        assert torch.equal(views.positives[i], z[i]) == (i not in (1, 2, 3)), f"level {i + 1}"
    expected = walkers.perturb(z, 1)
    assert torch.equal(views.positives[1], expected[1]) and torch.equal(views.positives[2], expected[2])
    torch.testing.assert_close(views.norms[:, 3], (views.positives[3] - z[3]).norm(dim=1))
    assert torch.equal(views.norms[:, [0, 4, 5]], torch.zeros(8, 3))
    with pytest.raises(InputError, match="no walker acts on level z2 geometry alone"):
        LearnedViews(g, walkers, levels=[2])
    walkers.save(tmp_path / "w")
    again = LearnedViews(g, tmp_path / "w")(z)
    assert all(torch.equal(a, b) for a, b in zip(again.positives, LearnedViews(g, walkers)(z).positives, strict=True))
