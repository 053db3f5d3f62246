"""Contrastive and non-contrastive losses as pure functions, each with a module wrapper.

    info_nce(z_a, z_b, temperature)     SimCLR's NT-Xent (Chen et al. 2020, eq. 1), paper eq. (1)
    simsiam_loss(p_a, p_b, z_a, z_b)    SimSiam's symmetric negative cosine (Chen & He 2021, Alg. 1)
    byol_loss(p_a, p_b, t_a, t_b)       BYOL's normalised MSE, symmetrised (Grill et al. 2020, eq. 2)

`info_nce` gathers negatives across ranks (with gradients) when torch.distributed is initialised and
`gather=True`, so a data-parallel run optimises exactly the InfoNCE of the global batch. Its `impl`
picks the kernel that computes it (mlvgm.kernels.infonce: "torch" reference, "compiled" cache-blocked CPU
path, fused "triton"; "auto" = Triton on CUDA, compiled elsewhere).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import Tensor, nn

from mlvgm.errors import InputError
from mlvgm.kernels.dispatch import IMPLS as INFO_NCE_IMPLS
from mlvgm.kernels.dispatch import resolve_impl
from mlvgm.kernels.infonce import normalized_rows, nt_xent


def _up(x: Tensor) -> Tensor:
    """Half-precision embeddings (AMP) to float32 for the loss; float32/64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _gather(z: Tensor) -> Tensor:
    """Concatenate z from every rank along dim 0, keeping the gradient to each rank's own z."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    return torch.cat(dist_fn.all_gather(z), dim=0)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def info_nce(
    z_a: Tensor,  # (N, D) embeddings of the first views
    z_b: Tensor,  # (N, D) embeddings of the second views; row i of z_a and z_b is a positive pair
    temperature: float = 0.1,  # tau
    *,
    gather: bool = True,  # take negatives from every rank when torch.distributed is initialised
    impl: str = "auto",  # "auto" | "torch" | "compiled" | "triton" (mlvgm.kernels.infonce)
) -> Tensor:
    """NT-Xent over the 2N (or 2N x world size) samples: for each sample, its other view is the
    positive and the remaining 2N-2 samples are negatives (itself excluded); the mean over samples of

        -log( exp(sim(i, pos(i)) / tau) / sum_{k != i} exp(sim(i, k) / tau) ),  sim = cosine.
    """
    if impl not in INFO_NCE_IMPLS:
        raise InputError(f"unknown info_nce impl {impl!r}: choose one of {', '.join(INFO_NCE_IMPLS)}")
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise InputError(
            f"info_nce needs two (N, D) embeddings of the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    if not temperature > 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    impl = resolve_impl("infonce", impl, z_a.device)
    n = z_a.shape[0]
    rows = normalized_rows(z_a, z_b, impl)  # (2N, D): this rank's samples
    columns, offset = rows, 0
    if gather:
        all_a, all_b = _gather(rows[:n]), _gather(rows[n:])
        if all_a.shape[0] != n:  # (2T, D): every rank's samples, this rank's at `offset`
            columns, offset = torch.cat([all_a, all_b], dim=0), _rank() * n
    return nt_xent(rows, columns, temperature, offset=offset, impl=impl)


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """D(p, z) = -cos(p, stopgrad(z)), mean over the batch (SimSiam's D)."""
    return -F.cosine_similarity(_up(p), _up(z.detach()), dim=1).mean()


def simsiam_loss(
    p_a: Tensor,  # (N, D) predictor outputs of view a
    p_b: Tensor,  # (N, D) predictor outputs of view b
    z_a: Tensor,  # (N, D) projector outputs of view a (gradient stopped)
    z_b: Tensor,  # (N, D) projector outputs of view b (gradient stopped)
) -> Tensor:
    """L = D(p_a, z_b) / 2 + D(p_b, z_a) / 2, in [-1, 1]."""
    return 0.5 * negative_cosine(p_a, z_b) + 0.5 * negative_cosine(p_b, z_a)


def byol_loss(p_a: Tensor, p_b: Tensor, t_a: Tensor, t_b: Tensor) -> Tensor:
    """BYOL's loss of (N, D) online predictions p and target projections t (gradient stopped), in [0, 8]:
    ||p_a/|p_a| - t_b/|t_b|||^2 + ||p_b/|p_b| - t_a/|t_a|||^2, batch mean. Each term is 2 - 2 cos, so the loss
    is 4 + 4 x SimSiam's loss of the same pairs."""
    return 4 + 4 * simsiam_loss(p_a, p_b, t_a, t_b)


class InfoNCE(nn.Module):
    def __init__(self, temperature: float = 0.1, *, gather: bool = True, impl: str = "auto") -> None:
        super().__init__()
        self.temperature, self.gather, self.impl = temperature, gather, impl

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        return info_nce(z_a, z_b, self.temperature, gather=self.gather, impl=self.impl)


class SimSiamLoss(nn.Module):
    def forward(self, p_a: Tensor, p_b: Tensor, z_a: Tensor, z_b: Tensor) -> Tensor:
        return simsiam_loss(p_a, p_b, z_a, z_b)


class BYOLLoss(nn.Module):
    def forward(self, p_a: Tensor, p_b: Tensor, t_a: Tensor, t_b: Tensor) -> Tensor:
        return byol_loss(p_a, p_b, t_a, t_b)
