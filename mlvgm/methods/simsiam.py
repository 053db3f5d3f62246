"""SimSiam (Chen & He 2021): projector 3 x (Linear, BN) with ReLU between, the last BN without affine;
bottleneck predictor Linear-BN-ReLU-Linear (2048 -> 512 -> 2048); symmetric negative cosine; the predictor's
learning rate fixed. Logs `z_std`, the collapse monitor."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mlvgm.encoders import backbone, mlp
from mlvgm.losses import simsiam_loss
from mlvgm.plugins import Method, register_method


class SimSiam(nn.Module):
    def __init__(self, arch: str, *, small_stem: bool, proj_dim: int, pred_hidden: int, width: int = 64) -> None:
        super().__init__()
        self.backbone, features = backbone(arch, small_stem=small_stem, width=width)
        self.projector = mlp([features, proj_dim, proj_dim, proj_dim], bn=True, last_bn=True, last_affine=False)
        self.predictor = mlp([proj_dim, pred_hidden, proj_dim], bn=True)

    def forward(self, view_a: Tensor, view_b: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        z = self.projector(self.backbone(torch.cat([view_a, view_b])))
        p = self.predictor(z)
        (z_a, z_b), (p_a, p_b) = z.chunk(2), p.chunk(2)
        # collapse monitor: the std of the normalised projections is 1/sqrt(d) when healthy, 0 collapsed
        z_std = nn.functional.normalize(z_a.detach().float(), dim=1).std(dim=0).mean() * math.sqrt(z.shape[1])
        return simsiam_loss(p_a, p_b, z_a, z_b), {"z_std": z_std}

    def after_step(self, step: int, total_steps: int) -> None:
        return None

    def param_groups(self, lr: float) -> list[dict]:
        predictor = list(self.predictor.parameters())  # a list: the order must not depend on object ids
        ids = {id(p) for p in predictor}
        rest = [p for p in self.parameters() if id(p) not in ids]
        # SimSiam keeps the predictor's learning rate fixed (section 4.1 of the paper)
        return [{"params": rest, "lr": lr, "fixed_lr": False}, {"params": predictor, "lr": lr, "fixed_lr": True}]


register_method(Method(
    "simsiam",
    build=lambda c: SimSiam(c.arch, small_stem=c.small_stem, width=c.width, proj_dim=c.proj_dim,
                            pred_hidden=c.pred_hidden),
    keys=("proj_dim", "pred_hidden"),
    metrics=("z_std",),
))  # fmt: skip
