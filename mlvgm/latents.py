"""Latent distributions on the device: uniform, normal and truncated normal, from any random source.

A *random source* is one of
- an `mlvgm.streams.Draws` (counter-based, keyed by (seed, rank, step, purpose): what training uses),
- a `torch.Generator` (what users and `check_mlvgm` pass for quick determinism),
- None (torch's global generator).

Every sampler starts from 24-bit integers and turns them into numbers with fixed-shape torch ops, so
the hot path has no numpy, no scipy, no rejection loop and no host round trip.

Truncated normal N^t(mu, sigma, t) (the paper's notation, Jahanian et al. 2021): the normal
N(mu, sigma^2) conditioned on |x - mu| <= t * sigma, sampled by inversion,

    x = mu + sigma * sqrt(2) * erfinv(v * erf(t / sqrt(2))),   v ~ U(-1, 1),

which is scipy.stats.truncnorm(a=-t, b=t, loc=mu, scale=sigma). Results are clamped to the bound, so
rounding can never put a value outside [mu - t sigma, mu + t sigma].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mlvgm.errors import InputError
from mlvgm.streams import Draws

RandomSource = Draws | torch.Generator | None

_BITS = 24  # float32 has a 24-bit significand: 24-bit integers convert exactly


def _shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    return (shape,) if isinstance(shape, int) else tuple(shape)


def _bits24(shape: tuple[int, ...], source: RandomSource, device) -> torch.Tensor:
    """Uniform integers in [0, 2**24) with the given shape, int64, on `device`."""
    n = math.prod(shape)
    if isinstance(source, Draws):
        return (source.uint32(n, device) >> (32 - _BITS)).reshape(shape)
    if source is not None and not isinstance(source, torch.Generator):
        raise InputError(
            f"a random source must be mlvgm.streams.Draws, torch.Generator or None, got {type(source).__name__}"
        )
    return torch.randint(0, 1 << _BITS, shape, generator=source, device=device, dtype=torch.int64)


def symmetric_uniform(
    shape: int | Sequence[int],  # output shape
    *,
    generator: RandomSource = None,  # Draws, torch.Generator or None
    device=None,  # output device (a Draws or Generator must live there)
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """v ~ U(-1, 1) on the open interval, symmetric: v = (2k + 1 - 2**24) / 2**24, k uniform in [0, 2**24)."""
    k = _bits24(_shape(shape), generator, device)
    return ((2 * k + 1 - (1 << _BITS)).to(dtype)) * (2.0**-_BITS)


def uniform(
    shape: int | Sequence[int],
    *,
    generator: RandomSource = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """u ~ U(0, 1) on the open interval (0, 1): u = (k + 1/2) / 2**24."""
    return 0.5 * symmetric_uniform(shape, generator=generator, device=device, dtype=dtype) + 0.5


def _check_params(std: float, t: float | None) -> None:
    if not std >= 0:  # also catches NaN
        raise InputError(f"sigma must be >= 0, got {std}: use a non-negative standard deviation")
    if t is not None and not t > 0:
        raise InputError(f"truncation t must be > 0 (in units of sigma), got {t}: use None for no truncation")


def truncated_normal(
    shape: int | Sequence[int],  # output shape
    *,
    mean: float | torch.Tensor = 0.0,  # mu; a tensor broadcasts against `shape`
    std: float | torch.Tensor = 1.0,  # sigma >= 0; a tensor broadcasts against `shape`
    t: float | torch.Tensor | None = None,  # truncation in units of sigma (> 0); None = untruncated
    generator: RandomSource = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """x ~ N^t(mean, std, t): |x - mean| <= t * std always.

    With t=None the normal is only cut where float32 inversion ends (|x - mean| < 5.4 std, a mass
    of 7e-8). Tensor `mean`/`std` give per-element parameters (per level, per dimension).
    """
    # Tensor parameters are not inspected here (that would sync the host on every step): callers
    # that build them, such as mlvgm.views, validate them once.
    _check_params(std if not isinstance(std, torch.Tensor) else 0.0, t if not isinstance(t, torch.Tensor) else 1.0)
    v = symmetric_uniform(shape, generator=generator, device=device, dtype=dtype)  # (*shape,) in (-1, 1)
    if t is None:
        z = math.sqrt(2.0) * torch.erfinv(v)
    elif isinstance(t, torch.Tensor):
        t = t.to(device=v.device, dtype=dtype)
        z = torch.minimum(torch.maximum(math.sqrt(2.0) * torch.erfinv(v * torch.erf(t / math.sqrt(2.0))), -t), t)
    else:
        z = (math.sqrt(2.0) * torch.erfinv(v * math.erf(t / math.sqrt(2.0)))).clamp(-t, t)
    return mean + std * z


def normal(
    shape: int | Sequence[int],
    *,
    mean: float | torch.Tensor = 0.0,
    std: float | torch.Tensor = 1.0,
    generator: RandomSource = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """x ~ N(mean, std^2): `truncated_normal` with t=None."""
    return truncated_normal(shape, mean=mean, std=std, t=None, generator=generator, device=device, dtype=dtype)
