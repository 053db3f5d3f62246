"""Each level's gain (mlvgm.zoo.gain.level_influence) on a generator whose Jacobians are known matrices: the top
singular value against numpy's SVD, the RMS gain against ||A||_F / sqrt(d)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlvgm.zoo.gain import level_influence


class Linear(torch.nn.Module):
    """image = A_1 z_1 + A_2 z_2 + tanh(0) (linear: the Jacobian of level i is A_i at every anchor)."""

    def __init__(self, matrices: list[torch.Tensor]) -> None:
        super().__init__()
        self.a = torch.nn.ParameterList([torch.nn.Parameter(m, requires_grad=False) for m in matrices])
        self.level_dims = tuple(m.shape[1] for m in matrices)

    def forward(self, latents):
        flat = sum(z @ a.T for z, a in zip(latents, self.a, strict=True))
        return flat.view(-1, 3, 2, 2)


def test_top_singular_value_and_rms_gain_match_the_matrices():
    gen = torch.Generator().manual_seed(0)
    a1 = torch.randn(12, 3, generator=gen)  # distinct singular values: power iteration converges
    q, _ = torch.linalg.qr(torch.randn(200, 200, generator=gen))
    a2 = 0.5 * q[:12]  # 12 x 200 with orthonormal rows times 0.5: every singular value 0.5
    out = level_influence(Linear([a1, a2]), n=4, iters=60)
    assert out[0]["top_singular"] == pytest.approx(float(np.linalg.svd(a1.numpy(), compute_uv=False)[0]), rel=1e-4)
    assert out[1]["top_singular"] == pytest.approx(0.5, rel=1e-4)
    # RMS gain ||A||_F / sqrt(d) by Hutchinson's estimate over 8 random directions: a few percent at d = 200
    assert out[1]["rms_gain"] == pytest.approx(float(torch.linalg.norm(a2)) / math.sqrt(200), rel=0.15)
    assert out[0]["rms_gain"] == pytest.approx(float(torch.linalg.norm(a1)) / math.sqrt(3), rel=0.6)
