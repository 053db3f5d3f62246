"""check_mlvgm must pass a conforming generator and catch each way a generator can break the protocol."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlvgm.generators.base import MLVGM
from mlvgm.testing import MLVGMConformanceError, check_mlvgm


class Good(MLVGM):
    level_dims = (3, 5)
    resolution = 8

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 3 * 8 * 8)

    def forward(self, latents):
        z = torch.cat(list(latents), dim=1)
        return torch.sigmoid(self.proj(z)).view(-1, 3, 8, 8)


class WrongShape(Good):
    def forward(self, latents):
        return super().forward(latents)[:, :, :4]


class OutOfRange(Good):
    def forward(self, latents):
        return 2.0 * super().forward(latents) - 0.5


class Noisy(Good):
    def forward(self, latents):
        out = super().forward(latents)
        return (out + 0.01 * torch.rand_like(out)).clamp(0, 1)


class Detached(Good):
    def forward(self, latents):
        return super().forward([latents[0], latents[1].detach()])


class BatchDependent(Good):
    def forward(self, latents):
        z = torch.cat(list(latents), dim=1)
        z = z - z.mean(dim=0, keepdim=True)  # batch statistics, like BatchNorm in train mode
        return torch.sigmoid(self.proj(z)).view(-1, 3, 8, 8)


class InPlace(Good):
    def forward(self, latents):
        latents[0].mul_(2.0)
        return super().forward(latents)


class IgnoresGenerator(Good):
    def sample_latents(self, n, *, truncation=None, generator=None):
        return [torch.zeros(n, d) for d in self.level_dims]


class WrongLatentShape(Good):
    def sample_latents(self, n, *, truncation=None, generator=None):
        return [torch.zeros(n, d + 1) for d in self.level_dims]


class BadDims(Good):
    level_dims = [3, 5]  # a list, not a tuple


class BadGroups(Good):
    groups = {"g": (0, 7)}


def test_a_conforming_generator_passes():
    report = check_mlvgm(Good())
    assert len(report.checks) == 4 and len(report.grad_norms) == 2 and report.zero_grad_levels == []
    assert report.unconnected_levels == [] and "gradients are finite" in str(report)


@pytest.mark.parametrize(
    ("generator", "message"),
    [
        (WrongShape, "forward must return (4, 3, 8, 8)"),
        (OutOfRange, "images must lie in [0, 1]"),
        (Noisy, "forward is not deterministic"),
        (BatchDependent, "each image must depend only on its own latents"),
        (InPlace, "modified its input latents in place"),
        (IgnoresGenerator, "ignores its generator argument"),
        (WrongLatentShape, "latent z1 must have shape (4, 3)"),
        (BadDims, "level_dims must be a non-empty tuple"),
        (BadGroups, "group 'g' must be a non-empty tuple of level indices"),
    ],
)
def test_each_violation_is_caught_and_named(generator, message):
    with pytest.raises(MLVGMConformanceError) as info:
        check_mlvgm(generator())
    assert message in str(info.value)


def test_a_zero_gradient_level_is_reported_not_failed():
    class Unused(Good):
        def forward(self, latents):
            return super().forward([latents[0], 0.0 * latents[1]])

    report = check_mlvgm(Unused())
    assert report.zero_grad_levels == [2] and report.unconnected_levels == []


def test_a_level_forward_never_uses_is_a_finding_not_a_violation():
    """No graph edge reaches z2 (detached): the same finding as a zero gradient, named as such."""
    report = check_mlvgm(Detached())
    assert report.zero_grad_levels == [2] and report.unconnected_levels == [2] and report.grad_norms[1] == 0.0
    assert "levels forward never uses (no graph edge): [2]" in str(report)


class NonFinite(Good):
    def forward(self, latents):
        return super().forward([latents[0], torch.sqrt(latents[1] - 10.0).nan_to_num(0.5)])


def test_a_non_finite_gradient_is_still_a_violation():
    with pytest.raises(MLVGMConformanceError, match="the gradient of latent z2 has non-finite values"):
        check_mlvgm(NonFinite())
