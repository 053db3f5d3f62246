"""Encoders f: torchvision ResNet backbones and the heads of SimCLR, SimSiam and BYOL.

Every method is an `nn.Module` with the same small interface, so the trainer never asks which one
it runs:

    loss, metrics = method(view_a, view_b)     # (B, 3, H, W) each; metrics: dict of floats tensors
    method.after_step(step, total_steps)       # BYOL's EMA target update; a no-op for the others
    method.backbone                            # the encoder that evaluation keeps
    method.param_groups(lr)                    # SimSiam keeps its predictor's lr fixed

Heads follow the original papers, sizes configurable:
- SimCLR (Chen et al. 2020): projector Linear-ReLU-Linear to 128-d, InfoNCE.
- SimSiam (Chen & He 2021): projector 3 x (Linear, BN) with ReLU between, the last BN without
  affine; bottleneck predictor Linear-BN-ReLU-Linear (2048 -> 512 -> 2048); symmetric negative cosine.
- BYOL (Grill et al. 2020): projector and predictor Linear-BN-ReLU-Linear (4096 -> 256); a target
  network (backbone + projector) that follows the online one by EMA, buffers (BN statistics) included,
  with momentum 1 - (1 - m0) (cos(pi k / K) + 1) / 2.
"""

from __future__ import annotations

import copy
import itertools
import math

import torch
import torchvision
from torch import Tensor, nn

from mlvgm.errors import InputError
from mlvgm.losses import byol_loss, info_nce, simsiam_loss
from mlvgm.options import ARCHS


def backbone(arch: str, *, small_stem: bool, width: int = 64) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its classifier, and its feature size (8 x width x block expansion:
    512 or 2048 at torchvision's width 64).

    small_stem: 3x3 stride-1 first conv and no max-pool, for 32-64 px images (CIFAR-style).
    width:      channels of the stem and first stage, doubled at each later stage; below 64 the network
                is narrower than torchvision's (32: about a quarter of the multiply-adds), for CPUs.
    """
    if arch not in ARCHS:
        raise InputError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHS)}")
    if isinstance(width, bool) or not isinstance(width, int) or not 8 <= width <= 256:
        raise InputError(f"backbone width must be an integer from 8 to 256 (torchvision's is 64), got {width!r}")
    net = getattr(torchvision.models, arch)(weights=None)
    if width != 64:
        _rescale(net, width)
    if small_stem:
        net.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    features = net.fc.in_features * width // 64
    net.fc = nn.Identity()
    return net, features


def _rescale(net: torchvision.models.ResNet, width: int) -> None:
    """Rebuild a torchvision ResNet's stem and four stages at `width`, 2 x, 4 x and 8 x width channels,
    with torchvision's own _make_layer and weight initialisation (it fixes the widths at 64..512)."""
    block = type(net.layer1[0])
    depths = [len(getattr(net, f"layer{i}")) for i in range(1, 5)]
    net.inplanes = width
    net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    for i, depth in enumerate(depths):
        setattr(net, f"layer{i + 1}", net._make_layer(block, width * 2**i, depth, stride=1 if i == 0 else 2))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def mlp(sizes: list[int], *, bn: bool, last_bn: bool = False, last_affine: bool = True) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between (and BN before each ReLU when bn)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        layers.append(nn.Linear(a, b, bias=not (bn and (not last or last_bn))))
        if not last:
            if bn:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.ReLU(inplace=True))
        elif last_bn:
            layers.append(nn.BatchNorm1d(b, affine=last_affine))
    return nn.Sequential(*layers)


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
