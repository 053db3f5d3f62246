"""Walkers T_i(z_i) = z_i + p(z_i) (COP-Gen's MLP), their files, and the Monte Carlo estimate of their norms."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.base import MLVGM
from mlvgm.streams import Stream
from mlvgm.walkers import LevelWalkers, Walker, monte_carlo


@pytest.fixture(scope="module")
def g():
    return load_generator("shapes")


class Grouped(MLVGM):
    """Unequal level sizes and groups, as StyleGAN2-style generators declare them."""

    level_dims = (4, 4, 4, 6)
    resolution = 8
    level_names = ("a", "b", "c", "d")
    groups = {"first": (0, 1)}

    def forward(self, latents):
        return torch.sigmoid(torch.cat(latents, 1).sum(1))[:, None, None, None].expand(-1, 3, 8, 8)


def anchors(g, n, seed=0):
    return g.sample_latents(n, truncation=2.0, generator=Stream(seed, purpose="anchors").at(0))


def test_walkers_start_near_the_zero_perturbation():
    """Weights ~ N(0, 0.01) and biases in +-0.001 (COP-Gen's init): the first views equal their anchors."""
    w = Walker(512, generator=torch.Generator().manual_seed(0))
    for layer in (w.p[0], w.p[2]):
        assert abs(layer.weight.std().item() - 0.01) < 5e-4 and abs(layer.weight.mean().item()) < 5e-4
        assert layer.bias.abs().max().item() <= 0.001
    z = torch.randn(64, 512)
    assert (w(z) - z).norm(dim=1).max().item() < 0.05 * z.norm(dim=1).min().item()


def test_a_unit_moves_only_its_levels_and_norms_are_literal(g):
    walkers = LevelWalkers(g, [2, "color"], seed=1)
    with torch.no_grad():
        for p in walkers.parameters():
            p.mul_(100)  # make the perturbation large enough to see
        z = anchors(g, 16)
        moved = walkers.perturb(z, 1)  # the "color" unit: level 3
        norms = walkers.norms(z, 1)
    for i in range(6):
        assert torch.equal(moved[i], z[i]) == (i != 2), f"level {i + 1}"
    literal = np.sqrt(((moved[2].numpy().astype(np.float64) - z[2].numpy()) ** 2).sum(axis=1))
    np.testing.assert_allclose(norms.numpy(), literal, rtol=1e-5)
    assert walkers.labels == ["z2 geometry", "z3 color"]


def test_groups_concatenate_levels_and_single_covers_all():
    toy = Grouped()
    walkers = LevelWalkers(toy, ["first", "d"])
    assert walkers.units == [(0, 1), (3,)] and [walkers.unit_dim(k) for k in range(2)] == [8, 6]
    assert walkers.labels == ["first", "z4 d"]
    assert LevelWalkers(toy, [[1, 3]]).labels == ["z1 a+z3 c"]
    single = LevelWalkers(toy, single=True)
    assert single.units == [(0, 1, 2, 3)] and single.unit_dim(0) == 18 and single.labels == ["all"]
    z = [torch.randn(5, d) for d in toy.level_dims]
    moved = single.perturb(z, 0)
    assert [m.shape for m in moved] == [x.shape for x in z]
    assert LevelWalkers(toy).units == [(0,), (1,), (2,), (3,)]


@pytest.mark.parametrize(
    ("units", "kwargs", "match"),
    [
        ([7], {}, "level 7 is out of range"),
        (["first", 1], {}, "is in two units"),
        ([1], {"single": True}, "do not also name units"),
        (None, {"hidden": 0}, "hidden must be > 0"),
    ],
)
def test_bad_units(units, kwargs, match):
    with pytest.raises(InputError, match=match):
        LevelWalkers(Grouped(), units, **kwargs)


def test_save_and_load_round_trip_without_pickle(g, tmp_path):
    walkers = LevelWalkers(g, [1, [2, 3]], hidden=16, seed=3)
    path = walkers.save(tmp_path / "walkers", gamma=1.0)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["units"] == [[0], [1, 2]] and meta["gamma"] == 1.0 and meta["hidden"] == 16
    loaded = LevelWalkers.load(tmp_path / "walkers", g)
    z = anchors(g, 8)
    for k in range(2):
        for a, b in zip(walkers.perturb(z, k), loaded.perturb(z, k), strict=True):
            assert torch.equal(a, b)
    from safetensors.torch import load_file

    assert set(load_file(str(path))) == set(walkers.state_dict())  # plain tensors, nothing executable


def test_load_refuses_other_generators_and_broken_files(g, tmp_path):
    LevelWalkers(g).save(tmp_path / "w")
    with pytest.raises(InputError, match="trained for levels of sizes"):
        LevelWalkers.load(tmp_path / "w", Grouped())
    with pytest.raises(InputError, match="are needed"):
        LevelWalkers.load(tmp_path / "missing", g)
    (tmp_path / "w.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="not a readable walkers file"):
        LevelWalkers.load(tmp_path / "w", g)


def test_monte_carlo_matches_a_numpy_loop(g):
    """mu, sigma and the interval equal numpy's over the same anchors, batch boundaries included."""
    walkers = LevelWalkers(g, [1, 4], seed=5)
    with torch.no_grad():
        for p in walkers.parameters():
            p.mul_(30)
    table = monte_carlo(g, walkers, samples=250, batch_size=64, seed=2, progress=False)
    stream = Stream(2, purpose="monte-carlo")
    norms = [[], []]
    with torch.no_grad():
        for step in range(4):
            z = g.sample_latents(min(64, 250 - 64 * step), truncation=2.0, generator=stream.at(step))
            for k in range(2):
                zk = z[walkers.units[k][0]].numpy().astype(np.float64)
                moved = walkers.walkers[k](z[walkers.units[k][0]]).numpy().astype(np.float64)
                norms[k] += [math.sqrt(sum((moved[b, j] - zk[b, j]) ** 2 for j in range(8))) for b in range(len(zk))]
    for k in range(2):
        values = np.array(norms[k])
        assert len(values) == 250
        assert table.loc[k, "mu"] == pytest.approx(values.mean(), rel=1e-5)
        assert table.loc[k, "sigma"] == pytest.approx(values.std(ddof=1), rel=1e-4)
        assert table.loc[k, "ci95"] == pytest.approx(1.96 * values.std(ddof=1) / math.sqrt(250), rel=1e-4)
    assert list(table["unit"]) == ["z1 identity", "z4 background"] and list(table["levels"]) == ["1", "4"]


def test_monte_carlo_of_a_constant_perturbation_has_zero_spread(g):
    """p(z) = c for every z (last layer's weight 0, bias c): mu = ||c|| exactly and sigma = 0, which a
    sum-of-squares variance would not give (cancellation); Chan's merge does."""
    walkers = LevelWalkers(g, [2])
    c = torch.tensor([3.0, -4.0, 0, 0, 0, 0, 12.0, 0])  # ||c|| = 13
    with torch.no_grad():
        walkers.walkers[0].p[2].weight.zero_()
        walkers.walkers[0].p[2].bias.copy_(c)
    table = monte_carlo(g, walkers, samples=1000, batch_size=300, progress=False)
    assert table.loc[0, "mu"] == pytest.approx(13.0, rel=1e-6)
    assert table.loc[0, "sigma"] < 1e-5


def test_monte_carlo_stops_on_a_diverged_walker(g):
    walkers = LevelWalkers(g, [1])
    with torch.no_grad():
        walkers.walkers[0].p[2].bias.fill_(float("nan"))
    with pytest.raises(InputError, match="non-finite perturbations: it diverged"):
        monte_carlo(g, walkers, samples=10, progress=False)
