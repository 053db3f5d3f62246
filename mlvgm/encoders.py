"""Encoders f: torchvision ResNet backbones and the MLP heads the methods (mlvgm/methods/) build on.

Every method is an `nn.Module` with the same small interface (mlvgm.plugins.Method), so the trainer never
asks which one it runs:

    loss, metrics = method(view_a, view_b)     # (B, 3, H, W) each; metrics: dict of floats tensors
    method.after_step(step, total_steps)       # BYOL's EMA target update; a no-op for the others
    method.backbone                            # the encoder that evaluation keeps
    method.param_groups(lr)                    # SimSiam keeps its predictor's lr fixed

Heads follow the original papers, sizes configurable (mlvgm/methods/simclr.py, simsiam.py, byol.py).
"""

from __future__ import annotations

import itertools

import torchvision
from torch import nn

from mlvgm.errors import InputError
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
