"""A small top-down hierarchical VAE (the NVAE / VDVAE family), and its decoder as an MLVGM.

    encoder  x (B, 3, R, R) -> features at every resolution R, R/2, ..., 1        (bottom-up)
    decoder  h_0 = a learned constant at 1x1; for each level i, coarse to fine:
                 h = upsample(h) to the level's resolution r_i
                 prior      p(z_i | z_<i) = N(mu_p(h), sigma_p(h))
                 posterior  q(z_i | x, z_<i) = N(mu_q(h, enc_r), sigma_q(h, enc_r))   (training only)
                 h = h + h_p(h) + W z_i, then a residual cell
             then residual cells up to R and a 3x3 conv to the pixel means (a sigmoid: images in [0, 1])
    loss     -ELBO = -log p(x | z) + sum_i KL(q_i || p_i), per pixel and channel (nats/dim); p(x | z) is a
             Gaussian or a discretised logistic mixture (mlvgm.generators.likelihoods)

As an MLVGM, level i's latent is the prior's standard-normal noise eps_i (flattened, C_i x r_i x r_i):
z_i = mu_p + temperature * sigma_p * eps_i, the usual reparameterisation of an HVAE's ancestral
sample. Views then perturb eps_i in a space where every level is N(0, I), as the protocol expects, and
`temperature` (the usual knob of HVAE sampling) scales the prior's spread without touching the latents,
so the library's truncation still clips eps_i as it does for any generator.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlvgm.errors import InputError
from mlvgm.generators.base import MLVGM
from mlvgm.generators.likelihoods import gaussian_nll, logistic_mixture_mean, logistic_mixture_nll, out_channels
from mlvgm.io import field
from mlvgm.options import HVAE_LIKELIHOODS as LIKELIHOODS

MAX_RESOLUTION = 1024  # bounds on what a config file may describe: far above the 32 and 64 px we train
MAX_CHANNELS = 4096
MAX_LIST = 32
MAX_MIXTURES = 64
MAX_CELLS = 16


@dataclass(frozen=True)
class HVAEConfig:
    resolution: int = 32  # image side
    widths: tuple[tuple[int, int], ...] = ((32, 32), (16, 48), (8, 64), (4, 64), (2, 64), (1, 64))  # (res, channels)
    levels: tuple[tuple[int, int], ...] = ((1, 16), (2, 8), (4, 4), (8, 4), (16, 2))  # (res, latent channels)
    level_names: tuple[str, ...] = ("global", "layout", "parts", "detail", "fine")
    likelihood: str = "gaussian"  # mlvgm.generators.likelihoods: gaussian or logistic_mixture
    mixtures: int = 10  # the logistic mixture's components per pixel
    cells: int = 1  # residual cells per resolution, in the encoder and in the decoder
    sigma_x: float = 0.0  # the Gaussian likelihood's scale, fixed (0: learned per channel, as the first weights)
    groups: int = 1  # latent groups per level: its channels split, each group's prior conditioned on those before
    position_bias: bool = False  # a learned feature map added at every resolution after upsampling (VDVAE's)
    strided: bool = False  # 2x2 stride-2 convolutions between resolutions (and their transposes), not pool / nearest

    def __post_init__(self) -> None:
        resolutions = [r for r, _ in self.widths]
        if resolutions != sorted(resolutions, reverse=True) or resolutions[0] != self.resolution:
            raise InputError(f"widths must list resolutions from {self.resolution} down, got {resolutions}")
        for r, _ in self.levels:
            if r not in resolutions:
                raise InputError(f"latent level at {r} px has no width: add ({r}, channels) to widths")
        if [r for r, _ in self.levels] != sorted(r for r, _ in self.levels):
            raise InputError("levels must go coarse to fine (increasing resolution)")
        if len(self.level_names) != len(self.levels):
            raise InputError(f"{len(self.levels)} levels need {len(self.levels)} level_names")
        if self.likelihood not in LIKELIHOODS:
            raise InputError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {self.likelihood!r}")
        if not 1 <= self.cells <= MAX_CELLS:
            raise InputError(f"cells must be in [1, {MAX_CELLS}], got {self.cells}")
        if not 1 <= self.mixtures <= MAX_MIXTURES:
            raise InputError(f"mixtures must be in [1, {MAX_MIXTURES}], got {self.mixtures}")
        if not (self.sigma_x == 0 or 1e-3 <= self.sigma_x <= 1):
            raise InputError(f"sigma_x must be 0 (learned) or in [0.001, 1], got {self.sigma_x}")
        if self.strided and any(r1 != 2 * r2 for r1, r2 in itertools.pairwise(resolutions)):
            raise InputError(f"strided resampling needs every resolution half the one before, got {resolutions}")
        if not 1 <= self.groups <= MAX_CELLS or any(c % self.groups for _, c in self.levels):
            raise InputError(f"groups must be in [1, {MAX_CELLS}] and divide every level's latent channels "
                             f"({', '.join(str(c) for _, c in self.levels)}), got {self.groups}")  # fmt: skip

    @classmethod
    def from_dict(cls, d: object, *, where: str = "hvae config", fix: str = "retrain with python -m mlvgm.zoo.train"):
        """The config a JSON file describes; a wrong type or an absurd size is one InputError line naming
        `where` (the weights' shapes are compared with the architecture separately, before allocating)."""

        def pairs(key: str, high: int) -> tuple[tuple[int, int], ...]:
            out = []
            for i, pair in enumerate(field(d, key, list, where=where, fix=fix, low=1, high=MAX_LIST)):
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise InputError(f"{where}: {key}[{i}] must be a pair [resolution, channels], got {pair!r}: {fix}")
                item = {"resolution": pair[0], "channels": pair[1]}
                r = field(item, "resolution", int, where=f"{where}: {key}[{i}]", fix=fix, low=1, high=MAX_RESOLUTION)
                c = field(item, "channels", int, where=f"{where}: {key}[{i}]", fix=fix, low=1, high=high)
                out.append((r, c))
            return tuple(out)

        resolution = field(d, "resolution", int, where=where, fix=fix, low=1, high=MAX_RESOLUTION)
        names = field(d, "level_names", list, where=where, fix=fix, low=1, high=MAX_LIST)
        if not all(isinstance(n, str) for n in names):
            raise InputError(f"{where}: level_names must be strings: {fix}")
        widths, levels = pairs("widths", MAX_CHANNELS), pairs("levels", MAX_CHANNELS)
        # the first weights' JSON names no likelihood: theirs is the Gaussian
        likelihood = field(d, "likelihood", str, where=where, fix=fix, low=1, high=32, default="gaussian")
        mixtures = field(d, "mixtures", int, where=where, fix=fix, low=1, high=MAX_MIXTURES, default=10)
        cells = field(d, "cells", int, where=where, fix=fix, low=1, high=MAX_CELLS, default=1)
        sigma_x = field(d, "sigma_x", float, where=where, fix=fix, low=0, high=1, default=0.0)
        groups = field(d, "groups", int, where=where, fix=fix, low=1, high=MAX_CELLS, default=1)
        position_bias = field(d, "position_bias", bool, where=where, fix=fix, default=False)
        strided = field(d, "strided", bool, where=where, fix=fix, default=False)
        if len({r for r, _ in widths}) != len(widths):
            raise InputError(f"{where}: widths name a resolution twice: {fix}")
        try:
            return cls(
                resolution=resolution,
                widths=widths,
                levels=levels,
                level_names=tuple(names),
                likelihood=likelihood,
                mixtures=mixtures,
                cells=cells,
                sigma_x=float(sigma_x),
                groups=groups,
                position_bias=position_bias,
                strided=strided,
            )
        except InputError as exc:
            raise InputError(f"{where}: {exc}: {fix}") from None

    def to_dict(self) -> dict:
        return asdict(self)

    def width(self, resolution: int) -> int:
        return dict(self.widths)[resolution]


class Cell(nn.Module):
    """x + conv1x1(gelu(conv3x3(gelu(conv1x1(gelu(x)))))): a bottleneck residual cell, no normalisation
    (VDVAE's choice: batch statistics would make an image depend on its batch); the last conv starts
    small so that a deep stack begins near the identity."""

    def __init__(self, channels: int, scale: float = 0.1) -> None:
        super().__init__()
        mid = max(channels // 2, 8)
        self.a = nn.Conv2d(channels, mid, 1)
        self.b = nn.Conv2d(mid, mid, 3, padding=1)
        self.c = nn.Conv2d(mid, channels, 1)
        with torch.no_grad():
            self.c.weight.mul_(scale)
            self.c.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.c(F.gelu(self.b(F.gelu(self.a(F.gelu(x))))))


def cells(channels: int, n: int) -> nn.Module:
    """n cells in a row (one is a bare Cell, so the first weights' tensor names still load)."""
    return Cell(channels) if n == 1 else nn.Sequential(*(Cell(channels) for _ in range(n)))


def _std(raw: Tensor) -> Tensor:
    return F.softplus(raw) + 1e-3


def gaussian_kl(mu_q: Tensor, sigma_q: Tensor, mu_p: Tensor, sigma_p: Tensor) -> Tensor:
    """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) per element, in nats (the closed form)."""
    return torch.log(sigma_p / sigma_q) + (sigma_q**2 + (mu_q - mu_p) ** 2) / (2 * sigma_p**2) - 0.5


class Encoder(nn.Module):
    """Bottom-up: a cell per resolution, average pooling between; returns {resolution: features}."""

    def __init__(self, config: HVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = nn.Conv2d(3, config.width(config.resolution), 3, padding=1)
        self.cells = nn.ModuleDict({str(r): cells(c, config.cells) for r, c in config.widths})
        pairs = zip(config.widths[:-1], config.widths[1:], strict=True)
        # pooling then a 1x1 conv treats the four pixels of a block alike; a strided conv weighs each by its place
        k = 2 if config.strided else 1
        self.down = nn.ModuleDict({str(r2): nn.Conv2d(c1, c2, k, stride=k) for (_, c1), (r2, c2) in pairs})

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        h = self.stem(x * 2 - 1)  # (B, C_R, R, R)
        features = {}
        for r, _ in self.config.widths:
            if r != self.config.resolution:
                h = self.down[str(r)](h if self.config.strided else F.adaptive_avg_pool2d(h, r))
            h = self.cells[str(r)](h)
            features[r] = h
        return features


class Decoder(MLVGM):
    """Top-down generator: eps_1..eps_n (standard normal, flattened per level) -> images in [0, 1].

    Also computes the training terms when given the encoder's features (`elbo_terms`).
    """

    def __init__(self, config: HVAEConfig, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise InputError(f"temperature must be > 0, got {temperature}")
        self.config = config
        self.temperature = float(temperature)
        self.resolution = config.resolution
        self.level_dims = tuple(c * r * r for r, c in config.levels)
        self.level_names = tuple(config.level_names)
        top = config.widths[-1]
        self.h0 = nn.Parameter(torch.zeros(1, top[1], top[0], top[0]))
        self.up = nn.ModuleDict()  # channel change on the way up, per resolution
        self.cells = nn.ModuleDict()  # a cell at every resolution after its latent (if any)
        ascending = list(reversed(config.widths))
        for (_, c1), (r2, c2) in itertools.pairwise(ascending):
            # strided: each of the four children of a pixel gets its own linear map (a 2x2 stride-2 transpose)
            self.up[str(r2)] = nn.ConvTranspose2d(c1, c2, 2, stride=2) if config.strided else nn.Conv2d(c1, c2, 1)
        # nearest upsampling copies a feature to every position: without a map of its own a resolution knows where
        # it is only from the convolutions' zero padding, so the spatial latents have to say where things go
        self.position = nn.ParameterDict()
        if config.position_bias:
            for (_, _), (r2, c2) in itertools.pairwise(ascending):
                self.position[str(r2)] = nn.Parameter(torch.zeros(1, c2, r2, r2))
        for r, c in config.widths:
            self.cells[str(r)] = cells(c, config.cells)
        # per latent group, level by level (index i * groups + g; one group: the first weights' names)
        self.prior = nn.ModuleList()  # h -> (mu_p, raw sigma_p, h_p)
        self.posterior = nn.ModuleList()  # (h, enc_r) -> (mu_q, raw sigma_q)
        self.z_in = nn.ModuleList()  # z -> the feature residual
        self.group_cells = nn.ModuleList()  # a cell between a level's groups (index i * (groups - 1) + g)
        for r, channels in config.levels:
            c, zc = config.width(r), channels // config.groups
            for g in range(config.groups):
                self.prior.append(nn.Conv2d(c, 2 * zc + c, 3, padding=1))
                self.posterior.append(nn.Conv2d(2 * c, 2 * zc, 3, padding=1))
                self.z_in.append(nn.Conv2d(zc, c, 1))
                with torch.no_grad():  # start with p(z_i) = N(0, I) and no feature residual, as VDVAE does
                    self.prior[-1].weight.zero_()
                    self.prior[-1].bias.zero_()
                    self.prior[-1].bias[zc : 2 * zc].fill_(math.log(math.e - 1))  # softplus^-1(1)
                    self.z_in[-1].weight.mul_(0.1)
                if g < config.groups - 1:
                    self.group_cells.append(Cell(c))
        self.out = nn.Conv2d(config.width(config.resolution), out_channels(config.likelihood, config.mixtures), 3,
                             padding=1)  # fmt: skip
        if config.likelihood == "gaussian" and config.sigma_x == 0:
            self.log_sigma_x = nn.Parameter(torch.full((3,), math.log(0.1)))  # the likelihood's per-channel scale
        elif config.likelihood == "gaussian":  # fixed: the price of a pixel's error, so what is worth a latent's nats
            self.register_buffer("log_sigma_x", torch.full((3,), math.log(config.sigma_x)))

    def _run(self, n: int, eps: Sequence[Tensor] | None, enc: dict[int, Tensor] | None,
             sample: bool = True, active: int | None = None) -> tuple[Tensor, list[Tensor]]:  # fmt: skip
        """Top-down pass. With `enc`, z comes from the posterior (its mean when not `sample`) and KL per level is
        returned; else from eps. With `enc` and `active`, the levels after the first `active` pay no KL and take
        their prior draw from eps, or without eps their prior mean (a progressive training's levels not entered)."""
        levels = {r: i for i, (r, _) in enumerate(self.config.levels)}
        h = self.h0.expand(n, -1, -1, -1)
        kls: list[Tensor] = []
        for r, _ in reversed(self.config.widths):
            if h.shape[-1] != r:
                up = self.up[str(r)]
                h = up(h) if self.config.strided else up(F.interpolate(h, size=(r, r), mode="nearest"))
                if str(r) in self.position:
                    h = h + self.position[str(r)]
            if r in levels:
                i, groups = levels[r], self.config.groups
                zc = self.config.levels[i][1] // groups
                level_kl = torch.zeros(n, device=h.device)  # (B,) nats; stays 0 for a level not entered
                for g in range(groups):
                    j = i * groups + g
                    mu_p, raw_p, h_p = torch.split(self.prior[j](h), [zc, zc, h.shape[1]], dim=1)
                    sigma_p = _std(raw_p)  # (B, zc, r, r)
                    if enc is not None and active is not None and i >= active and eps is None:
                        z = mu_p  # not yet entered: deterministic, so the decoder cannot lean on it
                    elif enc is None or (active is not None and i >= active):
                        e = eps[i].reshape(n, groups * zc, r, r)[:, g * zc : (g + 1) * zc]  # (B, D_i) -> group g
                        z = mu_p + self.temperature * sigma_p * e
                    else:
                        mu_q, raw_q = self.posterior[j](torch.cat([h, enc[r]], dim=1)).chunk(2, dim=1)
                        sigma_q = _std(raw_q)
                        z = mu_q + sigma_q * torch.randn_like(mu_q) if sample else mu_q
                        kl = gaussian_kl(mu_q.float(), sigma_q.float(), mu_p.float(), sigma_p.float())
                        level_kl = level_kl + kl.flatten(1).sum(1)  # (B,) nats
                    h = h + h_p + self.z_in[j](z)
                    if g < groups - 1:
                        h = self.group_cells[i * (groups - 1) + g](h)
                if enc is not None:
                    kls.append(level_kl)
            h = self.cells[str(r)](h)
        return self.out(h), kls  # the likelihood's parameters per pixel

    def image(self, params: Tensor) -> Tensor:
        """The image (B, 3, R, R) in [0, 1] the likelihood's parameters stand for: the mean (module docstring)."""
        if self.config.likelihood == "gaussian":
            return torch.sigmoid(params)
        return logistic_mixture_mean(params)

    def forward(self, latents: Sequence[Tensor]) -> Tensor:
        """(n, D_i) per level -> (n, 3, R, R) in [0, 1]; differentiable in every eps_i."""
        if len(latents) != len(self.level_dims):
            raise InputError(f"embedded takes {len(self.level_dims)} latent levels, got {len(latents)}")
        n = latents[0].shape[0]
        for i, (z, d) in enumerate(zip(latents, self.level_dims, strict=True)):
            if z.ndim != 2 or z.shape != (n, d):
                raise InputError(f"latent z{i + 1} must have shape ({n}, {d}), got {tuple(z.shape)}")
        params, _ = self._run(n, latents, None)
        return self.image(params)

    def elbo_terms(self, x: Tensor, enc: dict[int, Tensor],
                   active: int | None = None) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        """-log p(x | z) (B,) and KL per level (B, n_levels), in nats (float32 under autocast too), and the
        reconstruction's image (B, 3, R, R). `active`: as _run's."""
        params, kls = self._run(x.shape[0], None, enc, active=active)
        params = params.float()
        if self.config.likelihood == "gaussian":
            nll = gaussian_nll(x, torch.sigmoid(params), self.log_sigma_x)
        else:
            nll = logistic_mixture_nll(x, params)
        return nll, torch.stack(kls, dim=1), self.image(params)


class HierarchicalVAE(nn.Module):
    """Encoder + decoder; `loss` is the negative ELBO in nats per dimension, with a KL weight (warm-up)."""

    def __init__(self, config: HVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def forward(self, x: Tensor, kl_weight: float = 1.0, level_weights: Sequence[float] | None = None,
                free_nats: Sequence[float] | None = None, active: int | None = None) -> dict[str, Tensor]:  # fmt: skip
        """The loss weighs the KL by kl_weight (the warm-up) and each level's by level_weights (default 1: the
        positive control of docs/embedded.md weighs one level's heavily). free_nats: per level, the batch-mean KL
        under which the level pays nothing (Kingma et al. 2016's free bits), so that an encoder uses the global
        levels early instead of settling on the spatial ones. active: the levels entered so far in a progressive
        training (Li et al. 2020's pro-VLAE); the rest take their prior mean and pay no KL (free nats neither).
        The ELBO is always the unweighted one, of the levels entered."""
        nll, kl, recon = self.decoder.elbo_terms(x, self.encoder(x), active=active)
        dims = x[0].numel()
        elbo = (nll + kl.sum(1)).mean() / dims
        per_level = kl.mean(0)  # (n_levels,) nats per image
        if free_nats is not None:
            per_level = torch.maximum(per_level, torch.tensor(free_nats, device=kl.device, dtype=kl.dtype))
            if active is not None:
                per_level = per_level * (torch.arange(len(per_level), device=kl.device) < active)
        if level_weights is not None:
            per_level = per_level * torch.tensor(level_weights, device=kl.device, dtype=kl.dtype)
        loss = (nll.mean() + kl_weight * per_level.sum()) / dims
        return {"loss": loss, "elbo": elbo, "nll": nll.mean() / dims, "kl": kl.mean(0), "recon": recon}

    @torch.no_grad()
    def partial(self, x: Tensor, k: int, eps: Sequence[Tensor]) -> Tensor:
        """x's posterior means for z1..zk and prior draws (eps, at the decoder's temperature) below: which factors
        of x are fixed once the first k levels are (B, 3, R, R). k = 0 is a plain sample."""
        params, _ = self.decoder._run(x.shape[0], eps, self.encoder(x), sample=False, active=k)
        return self.decoder.image(params)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """x's reconstruction from every level's posterior mean: (B, 3, R, R) in [0, 1]."""
        params, _ = self.decoder._run(x.shape[0], None, self.encoder(x), sample=False)
        return self.decoder.image(params)
