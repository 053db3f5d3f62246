"""BYOL (Grill et al. 2020): projector and predictor Linear-BN-ReLU-Linear (4096 -> 256); a target network
(backbone + projector) that follows the online one by EMA, buffers (BN statistics) included, with momentum
1 - (1 - m0) (cos(pi k / K) + 1) / 2. Logs the momentum."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from mlvgm.encoders import backbone, mlp
from mlvgm.losses import byol_loss
from mlvgm.plugins import Method, register_method


class BYOL(nn.Module):
    def __init__(
        self, arch: str, *, small_stem: bool, proj_hidden: int, proj_dim: int, base_momentum: float, width: int = 64
    ) -> None:
        super().__init__()
        self.backbone, features = backbone(arch, small_stem=small_stem, width=width)
        self.projector = mlp([features, proj_hidden, proj_dim], bn=True)
        self.predictor = mlp([proj_dim, proj_hidden, proj_dim], bn=True)
        self.target_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.base_momentum = base_momentum
        self.register_buffer("momentum", torch.tensor(base_momentum, dtype=torch.float64))

    def forward(self, view_a: Tensor, view_b: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        both = torch.cat([view_a, view_b])
        p_a, p_b = self.predictor(self.projector(self.backbone(both))).chunk(2)
        with torch.no_grad():
            t_a, t_b = self.target_projector(self.target_backbone(both)).chunk(2)
        return byol_loss(p_a, p_b, t_a, t_b), {"momentum": self.momentum.float()}

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """EMA of parameters and buffers into the target, then the momentum for the next step."""
        m = float(self.momentum)
        for online, target in ((self.backbone, self.target_backbone), (self.projector, self.target_projector)):
            for o, t in zip(online.parameters(), target.parameters(), strict=True):
                t.mul_(m).add_(o.detach(), alpha=1.0 - m)
            for o, t in zip(online.buffers(), target.buffers(), strict=True):
                if t.is_floating_point():
                    t.mul_(m).add_(o, alpha=1.0 - m)
                else:
                    t.copy_(o)  # BN's num_batches_tracked
        progress = min(step + 1, total_steps) / max(total_steps, 1)
        self.momentum.fill_(1.0 - (1.0 - self.base_momentum) * (math.cos(math.pi * progress) + 1.0) / 2.0)

    def param_groups(self, lr: float) -> list[dict]:
        online = [p for p in self.parameters() if p.requires_grad]
        return [{"params": online, "lr": lr, "fixed_lr": False}]


register_method(Method(
    "byol",
    build=lambda c: BYOL(c.arch, small_stem=c.small_stem, width=c.width, proj_hidden=c.proj_hidden,
                         proj_dim=c.proj_dim, base_momentum=c.byol_momentum),
    keys=("proj_hidden", "proj_dim", "byol_momentum"),
    metrics=("momentum",),
))  # fmt: skip
