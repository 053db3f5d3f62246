"""Backbones and heads: shapes, the papers' head layouts, BYOL's EMA (parameters and buffers) against
the formula, SimSiam's fixed-lr predictor group."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mlvgm.encoders import backbone, mlp
from mlvgm.errors import InputError
from mlvgm.methods.byol import BYOL
from mlvgm.methods.simclr import SimCLR
from mlvgm.methods.simsiam import SimSiam


@pytest.mark.parametrize(("arch", "features"), [("resnet18", 512), ("resnet50", 2048)])
def test_backbones(arch, features):
    net, dim = backbone(arch, small_stem=True)
    assert dim == features
    assert isinstance(net.maxpool, nn.Identity) and net.conv1.stride == (1, 1) and net.conv1.kernel_size == (3, 3)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, features)
    standard, _ = backbone(arch, small_stem=False)
    assert standard.conv1.kernel_size == (7, 7) and isinstance(standard.maxpool, nn.MaxPool2d)


def test_unknown_arch():
    with pytest.raises(InputError, match="unknown arch 'vgg'"):
        backbone("vgg", small_stem=False)


def test_head_layouts():
    simsiam = SimSiam("resnet18", small_stem=True, proj_dim=64, pred_hidden=16)
    bns = [m for m in simsiam.projector if isinstance(m, nn.BatchNorm1d)]
    assert len(bns) == 3 and bns[-1].affine is False  # the last BN of SimSiam's projector has no affine
    assert [m.out_features for m in simsiam.predictor if isinstance(m, nn.Linear)] == [16, 64]
    simclr = SimCLR("resnet18", small_stem=True, proj_hidden=32, proj_dim=8, temperature=0.1)
    assert [type(m) for m in simclr.projector] == [nn.Linear, nn.ReLU, nn.Linear]
    assert mlp([4, 5, 6], bn=True)[0].bias is None  # a Linear before BN needs no bias


@pytest.mark.parametrize(
    "method",
    [
        SimCLR("resnet18", small_stem=True, proj_hidden=32, proj_dim=8, temperature=0.1),
        SimSiam("resnet18", small_stem=True, proj_dim=32, pred_hidden=8),
        BYOL("resnet18", small_stem=True, proj_hidden=32, proj_dim=8, base_momentum=0.99),
    ],
    ids=["simclr", "simsiam", "byol"],
)
def test_every_method_returns_a_differentiable_loss(method):
    loss, metrics = method(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert method.backbone.conv1.weight.grad is not None
    assert all(torch.isfinite(v) for v in metrics.values())


def test_byol_target_follows_the_ema_formula_including_buffers():
    byol = BYOL("resnet18", small_stem=True, proj_hidden=16, proj_dim=8, base_momentum=0.9)
    byol.train()
    byol(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))[0].backward()  # moves BN running stats
    with torch.no_grad():
        for p in byol.backbone.parameters():
            p.add_(0.1)
    online_w = byol.backbone.conv1.weight.clone()
    target_w = byol.target_backbone.conv1.weight.clone()
    online_bn = byol.backbone.bn1.running_mean.clone()
    target_bn = byol.target_backbone.bn1.running_mean.clone()
    byol.after_step(0, total_steps=10)
    torch.testing.assert_close(byol.target_backbone.conv1.weight, 0.9 * target_w + 0.1 * online_w)
    torch.testing.assert_close(byol.target_backbone.bn1.running_mean, 0.9 * target_bn + 0.1 * online_bn)
    assert byol.target_backbone.bn1.num_batches_tracked == byol.backbone.bn1.num_batches_tracked
    # momentum for the next step: 1 - (1 - m0) (cos(pi k / K) + 1) / 2 with k = 1, K = 10
    assert float(byol.momentum) == pytest.approx(1 - 0.1 * (math.cos(math.pi * 0.1) + 1) / 2)
    byol.after_step(9, total_steps=10)
    assert float(byol.momentum) == pytest.approx(1.0)
    assert not any(p.requires_grad for p in byol.target_backbone.parameters())


def test_simsiam_predictor_group_keeps_a_fixed_lr():
    simsiam = SimSiam("resnet18", small_stem=True, proj_dim=16, pred_hidden=8)
    groups = simsiam.param_groups(0.1)
    fixed = [g for g in groups if g["fixed_lr"]]
    assert len(fixed) == 1 and set(fixed[0]["params"]) == set(simsiam.predictor.parameters())
    assert sum(len(g["params"]) for g in groups) == len(list(simsiam.parameters()))
