"""SimCLR (Chen et al. 2020): projector Linear-ReLU-Linear to 128-d, InfoNCE over both views (mlvgm.losses,
through the fused kernel mlvgm.kernels.infonce)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mlvgm.encoders import backbone, mlp
from mlvgm.losses import info_nce
from mlvgm.plugins import Method, register_method


class SimCLR(nn.Module):
    def __init__(
        self,
        arch: str,
        *,
        small_stem: bool,
        proj_hidden: int,
        proj_dim: int,
        temperature: float,
        impl: str = "auto",
        width: int = 64,
    ) -> None:
        super().__init__()
        self.backbone, features = backbone(arch, small_stem=small_stem, width=width)
        self.projector = mlp([features, proj_hidden, proj_dim], bn=False)
        self.temperature = temperature
        self.impl = impl  # InfoNCE kernel (mlvgm.kernels.infonce)

    def forward(self, view_a: Tensor, view_b: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        z = self.projector(self.backbone(torch.cat([view_a, view_b])))  # one pass: BN sees both views
        z_a, z_b = z.chunk(2)
        return info_nce(z_a, z_b, self.temperature, impl=self.impl), {}

    def after_step(self, step: int, total_steps: int) -> None:
        return None

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": list(self.parameters()), "lr": lr, "fixed_lr": False}]


register_method(Method(
    "simclr",
    build=lambda c: SimCLR(c.arch, small_stem=c.small_stem, width=c.width, proj_hidden=c.proj_hidden,
                           proj_dim=c.proj_dim, temperature=c.temperature, impl=c.kernels),
    keys=("proj_hidden", "proj_dim", "temperature", "kernels"),
    chance_loss=lambda batch: math.log(2 * batch - 1),  # every one of the 2B - 1 others equally likely
    kernels=("infonce",),
))  # fmt: skip
