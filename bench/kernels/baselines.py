"""What the kernels are measured against: the paper's own code paths, re-written here as baselines.

- `paper_supcon`: mi_ml_gen's loss, SupCon (Khosla et al. 2020) in its unsupervised form, eager: one
  (2N, 2N) matmul, the row max subtracted, an identity mask tiled and scattered, exp, masked sum, log,
  the mean log-probability of the positives. base_temperature = temperature, so it returns the raw
  InfoNCE (the paper's logged values are this x 0.1 / 0.07).
- `paper_perturb`: the paper's random views: scipy.stats.truncnorm sampled on the CPU per latent chunk,
  copied to the device, added to the anchors.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def paper_supcon(z_a: Tensor, z_b: Tensor, temperature: float) -> Tensor:
    n = z_a.shape[0]
    features = torch.cat([F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)], dim=0)  # (2N, D)
    anchor_dot_contrast = torch.div(features @ features.T, temperature)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    mask = torch.eye(n, device=z_a.device).repeat(2, 2)
    logits_mask = torch.scatter(
        torch.ones_like(mask), 1, torch.arange(2 * n, device=z_a.device).view(-1, 1), 0
    )  # 0 on the diagonal
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    return (-mean_log_prob_pos).view(2, n).mean()


def paper_perturb(
    z: Tensor,  # (B, D) anchors on the device
    level_dims: tuple[int, ...],
    sigma: tuple[float, ...],  # per level; 0 = left alone
    t: float,
    rng: np.random.Generator,
) -> tuple[Tensor, Tensor]:
    from scipy.stats import truncnorm

    parts = []
    for d, s in zip(level_dims, sigma, strict=True):
        if s > 0:
            w = truncnorm.rvs(-t, t, loc=0.0, scale=s, size=(z.shape[0], d), random_state=rng)
            parts.append(torch.from_numpy(w.astype(np.float32)).to(z.device))
        else:
            parts.append(torch.zeros(z.shape[0], d, device=z.device))
    norms = torch.stack([p.norm(dim=1) for p in parts], dim=1)
    return z + torch.cat(parts, dim=1), norms
