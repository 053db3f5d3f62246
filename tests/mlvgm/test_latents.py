"""Latent distributions against scipy.stats (a test-only reference): KS tests, bounds, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from mlvgm.errors import InputError
from mlvgm.latents import normal, symmetric_uniform, truncated_normal, uniform
from mlvgm.streams import Stream

N = 200_000
P_MIN = 1e-3  # fixed seeds make these deterministic; a correct sampler passes with a wide margin


def sources():
    yield "stream", Stream(42, purpose="test").at(0)
    yield "torch.Generator", torch.Generator().manual_seed(42)


@pytest.mark.parametrize(("mu", "sigma", "t"), [(0.0, 1.0, 2.0), (0.5, 0.2, 0.9), (-1.0, 3.0, 0.1), (0.0, 1.0, 4.0)])
@pytest.mark.parametrize("source_name", ["stream", "torch.Generator"])
def test_truncated_normal_matches_scipy(mu, sigma, t, source_name):
    source = dict(sources())[source_name]
    x = truncated_normal(N, mean=mu, std=sigma, t=t, generator=source, dtype=torch.float64)
    reference = stats.truncnorm(a=-t, b=t, loc=mu, scale=sigma)
    assert stats.kstest(x.numpy(), reference.cdf).pvalue > P_MIN
    assert float((x - mu).abs().max()) <= t * sigma
    assert abs(float(x.mean()) - mu) < 5 * reference.std() / math.sqrt(N)
    assert float(x.std()) == pytest.approx(reference.std(), rel=0.01)


@pytest.mark.parametrize("t", [1e-3, 0.3, 6.0, 10.0])
def test_values_never_exceed_the_truncation(t):
    x = truncated_normal(500_000, mean=0.0, std=1.0, t=t, generator=Stream(1).at(0))
    assert torch.isfinite(x).all()
    assert float(x.abs().max()) <= t


def test_normal_matches_scipy():
    x = normal(N, mean=2.0, std=0.5, generator=Stream(3).at(0), dtype=torch.float64)
    assert stats.kstest(x.numpy(), stats.norm(loc=2.0, scale=0.5).cdf).pvalue > P_MIN


def test_uniform_is_open_and_uniform():
    u = uniform(N, generator=Stream(4).at(0), dtype=torch.float64)
    assert 0.0 < float(u.min()) and float(u.max()) < 1.0
    assert stats.kstest(u.numpy(), "uniform").pvalue > P_MIN
    v = symmetric_uniform(N, generator=Stream(4).at(1), dtype=torch.float64)
    assert -1.0 < float(v.min()) and float(v.max()) < 1.0
    assert stats.kstest(v.numpy(), stats.uniform(loc=-1.0, scale=2.0).cdf).pvalue > P_MIN


def test_per_element_parameters():
    """Tensor mean/std/t give each column its own N^t(mu, sigma, t)."""
    mu = torch.tensor([0.0, 1.0, -2.0])
    sigma = torch.tensor([1.0, 0.1, 2.0])
    t = torch.tensor([2.0, 0.5, float("inf")])
    x = truncated_normal((N // 2, 3), mean=mu, std=sigma, t=t, generator=Stream(5).at(0), dtype=torch.float64)
    for j in range(3):
        ref = (
            stats.norm(loc=float(mu[j]), scale=float(sigma[j]))
            if math.isinf(t[j])
            else stats.truncnorm(a=-float(t[j]), b=float(t[j]), loc=float(mu[j]), scale=float(sigma[j]))
        )
        assert stats.kstest(x[:, j].numpy(), ref.cdf).pvalue > P_MIN


def test_reproducible_from_the_same_key():
    a = truncated_normal((64, 8), t=2.0, generator=Stream(9).at(3))
    b = truncated_normal((64, 8), t=2.0, generator=Stream(9).at(3))
    c = truncated_normal((64, 8), t=2.0, generator=Stream(9).at(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_zero_sigma_gives_the_mean():
    x = truncated_normal(10, mean=3.0, std=0.0, t=2.0, generator=Stream(0).at(0))
    assert torch.equal(x, torch.full((10,), 3.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"std": -1.0}, "sigma must be >= 0"),
        ({"std": float("nan")}, "sigma must be >= 0"),
        ({"t": 0.0}, "truncation t must be > 0"),
        ({"t": -2.0}, "truncation t must be > 0"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(InputError, match=match):
        truncated_normal(4, **kwargs)


def test_bad_source():
    with pytest.raises(InputError, match="random source"):
        truncated_normal(4, generator=42)
