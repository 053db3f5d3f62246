"""The pixel likelihoods of the embedded hierarchical VAE (mlvgm.generators.hvae): how its decoder's output is
read as a distribution over images, what the training's reconstruction term is, and which image the generator
returns.

- `gaussian`: 3 channels of means through a sigmoid, a learned scale per colour channel (the first weights).
  The image is the mean.
- `logistic_mixture`: the discretised mixture of logistics of PixelCNN++ (Salimans et al. 2017), as VDVAE
  uses it. Per pixel, K components share one mixing weight across the three channels. Each has a location
  and log-scale per channel, and two (G) and three (B) linear coefficients that let green depend on red,
  and blue on both. Pixels are read as 8-bit values: the likelihood of a value is the mass of its bin,
  with the two end bins open. The image is the mixture's mean: per component, the channel means follow
  the same linear chain; clamped to [-1, 1], then mapped to [0, 1]. It is differentiable in every input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

BINS = 255  # an 8-bit pixel: 256 values, 255 gaps between the ends of [-1, 1]
MIN_LOG_SCALE = -7.0


def out_channels(likelihood: str, mixtures: int) -> int:
    """Channels the decoder's last conv produces for the likelihood."""
    return 3 if likelihood == "gaussian" else 10 * mixtures  # logit + 3 locations + 3 log-scales + 3 coefficients


def gaussian_nll(x: Tensor, means: Tensor, log_sigma: Tensor) -> Tensor:
    """-log N(x | means, sigma) per image (B,), in nats; log_sigma per channel (3,)."""
    log_sigma = log_sigma.clamp(min=math.log(1e-3)).view(1, 3, 1, 1)
    nll = 0.5 * ((x - means) / log_sigma.exp()) ** 2 + log_sigma + 0.5 * math.log(2 * math.pi)
    return nll.flatten(1).sum(1)


def split_mixture(params: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(B, 10K, H, W) -> logits (B, K, H, W), locations, log-scales (B, 3, K, H, W), coefficients (B, 3, K, H, W)."""
    b, c, h, w = params.shape
    k = c // 10
    logits = params[:, :k]
    rest = params[:, k:].reshape(b, 9, k, h, w)
    locations, log_scales, coefficients = rest[:, 0:3], rest[:, 3:6].clamp(min=MIN_LOG_SCALE), torch.tanh(rest[:, 6:9])
    return logits, locations, log_scales, coefficients


def chained_locations(locations: Tensor, coefficients: Tensor, red: Tensor, green: Tensor) -> Tensor:
    """Each component's channel locations with green shifted by a * red, and blue by b * red + c * green."""
    r = locations[:, 0]
    g = locations[:, 1] + coefficients[:, 0] * red
    b = locations[:, 2] + coefficients[:, 1] * red + coefficients[:, 2] * green
    return torch.stack([r, g, b], dim=1)


def logistic_mixture_nll(x: Tensor, params: Tensor) -> Tensor:
    """-log P(x) per image (B,), in nats, for x (B, 3, H, W) in [0, 1] read as 8-bit values."""
    logits, locations, log_scales, coefficients = split_mixture(params.float())
    x = (torch.round(x.float().clamp(0, 1) * BINS) / BINS) * 2 - 1  # [-1, 1], on the 256-value grid
    xs = x.unsqueeze(2)  # (B, 3, 1, H, W)
    means = chained_locations(locations, coefficients, xs[:, 0], xs[:, 1])
    centred = xs - means
    inv = torch.exp(-log_scales)
    plus = inv * (centred + 1 / BINS)
    minus = inv * (centred - 1 / BINS)
    log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus): the lowest bin is open below
    log_sf_minus = -F.softplus(minus)  # log (1 - sigmoid(minus)): the highest bin is open above
    # an inner bin's mass; where it underflows (a scale far below a bin), the density at its centre times its width
    mass = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = centred * inv
    log_pdf_mid = mid - log_scales - 2 * F.softplus(mid) + math.log(2 / BINS)  # the density times the bin width
    log_mass = torch.where(mass > 1e-5, torch.log(mass.clamp(min=1e-12)), log_pdf_mid)
    log_p = torch.where(xs < -0.999, log_cdf_plus, torch.where(xs > 0.999, log_sf_minus, log_mass))
    per_component = log_p.sum(1) + torch.log_softmax(logits, dim=1)  # (B, K, H, W)
    return -torch.logsumexp(per_component, dim=1).flatten(1).sum(1)


def logistic_mixture_mean(params: Tensor) -> Tensor:
    """The mixture's mean image (B, 3, H, W) in [0, 1]."""
    logits, locations, _, coefficients = split_mixture(params)
    red = locations[:, 0]
    green = locations[:, 1] + coefficients[:, 0] * red
    blue = locations[:, 2] + coefficients[:, 1] * red + coefficients[:, 2] * green
    weights = torch.softmax(logits, dim=1)  # (B, K, H, W)
    mean = torch.stack([(weights * c).sum(1) for c in (red, green, blue)], dim=1)
    return (mean.clamp(-1, 1) + 1) / 2
