"""The embedded VAE's discretised logistic mixture (mlvgm.generators.likelihoods) against a literal reference:
per pixel, the mass of its 8-bit bin under each component by scipy's logistic CDF, with the channel chain
written out, summed over the mixture by hand; the mean image by the same chain; and the decoder wired to it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import logistic

from mlvgm.generators.hvae import Decoder, HierarchicalVAE, HVAEConfig
from mlvgm.generators.likelihoods import logistic_mixture_mean, logistic_mixture_nll
from mlvgm.testing import check_mlvgm

K = 3


def literal_nll(x: np.ndarray, params: np.ndarray) -> float:
    """-log P(x) of one image x (3, H, W) in [0, 1], params (10K, H, W), pixel by pixel."""
    total = 0.0
    _, h, w = x.shape
    for i in range(h):
        for j in range(w):
            v = np.round(x[:, i, j] * 255) / 255 * 2 - 1  # the pixel's 8-bit value in [-1, 1]
            p = params[:, i, j]
            logits = p[:K]
            mix = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            prob = 0.0
            for k in range(K):
                mu = [p[K + c * K + k] for c in range(3)]
                scale = [math.exp(max(p[4 * K + c * K + k], -7.0)) for c in range(3)]
                a, b, c_ = (math.tanh(p[7 * K + c * K + k]) for c in range(3))
                centre = [mu[0], mu[1] + a * v[0], mu[2] + b * v[0] + c_ * v[1]]
                mass = 1.0
                for ch in range(3):
                    upper = logistic.cdf(v[ch] + 1 / 255, loc=centre[ch], scale=scale[ch])
                    lower = logistic.cdf(v[ch] - 1 / 255, loc=centre[ch], scale=scale[ch])
                    if v[ch] <= -1 + 1e-9:
                        mass *= upper  # the lowest bin reaches down to -infinity
                    elif v[ch] >= 1 - 1e-9:
                        mass *= 1 - lower  # the highest bin reaches up to +infinity
                    else:
                        mass *= upper - lower
                prob += mix[k] * mass
            total -= math.log(prob)
    return total


def random_params(h: int, w: int, seed: int, scale_offset: float = -2.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(1, 10 * K, h, w, generator=gen, dtype=torch.float64)
    p[:, K : 4 * K] *= 0.6  # locations mostly inside [-1, 1]
    p[:, 4 * K : 7 * K] = p[:, 4 * K : 7 * K] * 0.5 + scale_offset  # log-scales around e^-2: a few bins wide
    return p


@pytest.mark.parametrize("seed", [0, 1])
def test_nll_matches_the_literal_bin_masses(seed):
    gen = torch.Generator().manual_seed(10 + seed)
    x = torch.rand(1, 3, 4, 5, generator=gen, dtype=torch.float64)
    x[0, 0, 0, 0], x[0, 1, 0, 1], x[0, 2, 1, 1] = 0.0, 1.0, 1.0  # the open end bins too
    params = random_params(4, 5, seed)
    got = float(logistic_mixture_nll(x, params))
    assert got == pytest.approx(literal_nll(x[0].numpy(), params[0].numpy()), rel=1e-4)


def test_nll_of_a_very_sharp_component_falls_back_to_the_density_and_stays_finite():
    params = random_params(2, 2, 3, scale_offset=-6.9)  # scale e^-7: a bin holds almost all of a component
    x = torch.full((1, 3, 2, 2), 0.5)
    value = logistic_mixture_nll(x, params)
    assert torch.isfinite(value).all() and float(value) >= 0  # a probability: -log P >= 0


def test_the_256_values_of_a_channel_partition_its_probability():
    # no channel coefficients: summing P over every red value must leave sum_k pi_k P_k(green) P_k(blue)
    params = random_params(1, 1, 4)
    params[:, 7 * K :] = 0.0  # tanh(0) = 0
    total = 0.0
    for level in range(256):
        x = torch.tensor([level / 255, 0.3, 0.7], dtype=torch.float64).view(1, 3, 1, 1)
        total += math.exp(-float(logistic_mixture_nll(x, params)))
    p = params[0, :, 0, 0].numpy()
    mix = np.exp(p[:K]) / np.exp(p[:K]).sum()
    marginal = 0.0
    for k in range(K):
        term = mix[k]
        for ch, value in ((1, 0.3), (2, 0.7)):
            v = np.round(value * 255) / 255 * 2 - 1
            loc, scale = p[K + ch * K + k], math.exp(p[4 * K + ch * K + k])
            term *= logistic.cdf(v + 1 / 255, loc, scale) - logistic.cdf(v - 1 / 255, loc, scale)
        marginal += term
    # rel 1e-5: a bin of mass under 1e-5 is read as its centre's density times its width, not a CDF difference
    assert total == pytest.approx(marginal, rel=1e-5)


def test_mean_image_follows_the_channel_chain():
    params = random_params(2, 3, 5).float()
    got = logistic_mixture_mean(params)[0].numpy()
    p = params[0].numpy()
    for i in range(2):
        for j in range(3):
            q = p[:, i, j]
            mix = np.exp(q[:K]) / np.exp(q[:K]).sum()
            means = np.zeros(3)
            for k in range(K):
                a, b, c = (math.tanh(q[7 * K + ch * K + k]) for ch in range(3))
                r = q[K + k]
                g = q[2 * K + k] + a * r
                bl = q[3 * K + k] + b * r + c * g
                means += mix[k] * np.array([r, g, bl])
            assert got[:, i, j] == pytest.approx((np.clip(means, -1, 1) + 1) / 2, abs=1e-5)


SMALL = HVAEConfig(resolution=32, widths=((32, 8), (16, 8), (8, 8), (4, 8), (2, 8), (1, 8)),
                   levels=((1, 4), (4, 2), (16, 1)), level_names=("a", "b", "c"),
                   likelihood="logistic_mixture", mixtures=K)  # fmt: skip


def test_a_mixture_decoder_follows_the_protocol_and_its_loss_is_the_mixture_nll():
    torch.manual_seed(0)
    vae = HierarchicalVAE(SMALL)
    assert not hasattr(vae.decoder, "log_sigma_x") and vae.decoder.out.out_channels == 10 * K
    report = check_mlvgm(vae.decoder.eval(), n=3)
    assert not report.unconnected_levels
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.manual_seed(1)
        nll, kl, image = vae.decoder.elbo_terms(x, vae.encoder(x))
        torch.manual_seed(1)
        params, _ = vae.decoder._run(2, None, vae.encoder(x))
    assert torch.allclose(nll, logistic_mixture_nll(x, params.float()))
    assert torch.allclose(image, logistic_mixture_mean(params.float()))
    assert bool((nll > 0).all())  # a discrete likelihood: never a negative -log P
    weights = [1.0, 50.0, 1.0]
    torch.manual_seed(1)
    with torch.no_grad():
        out = vae(x, kl_weight=0.5, level_weights=weights)
    expected = (nll + 0.5 * (kl * torch.tensor(weights)).sum(1)).mean() / x[0].numel()
    assert float(out["loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(out["elbo"]) == pytest.approx(float((nll + kl.sum(1)).mean() / x[0].numel()), rel=1e-5)


def test_configs_without_a_likelihood_read_as_the_gaussian_one():
    old = {k: v for k, v in SMALL.to_dict().items() if k not in ("likelihood", "mixtures")}
    old = {k: [list(p) for p in v] if k in ("widths", "levels") else (list(v) if isinstance(v, tuple) else v)
           for k, v in old.items()}  # fmt: skip
    assert HVAEConfig.from_dict(old).likelihood == "gaussian"
    assert Decoder(HVAEConfig.from_dict(old)).out.out_channels == 3
