"""Losses against literal numpy loops written from the papers' pseudocode, gradients, and the
distributed (gathered) InfoNCE against the single-process one on the concatenated batch."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from mlvgm.errors import InputError
from mlvgm.losses import InfoNCE, byol_loss, info_nce, simsiam_loss


def nt_xent_literal(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    """SimCLR Algorithm 1, one sample at a time."""
    z = np.concatenate([a, b]).astype(np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n2 = len(z)
    half = n2 // 2
    total = 0.0
    for i in range(n2):
        positive = i + half if i < half else i - half
        denominator = 0.0
        for k in range(n2):
            if k != i:
                denominator += np.exp(np.dot(z[i], z[k]) / tau)
        total += -np.log(np.exp(np.dot(z[i], z[positive]) / tau) / denominator)
    return total / n2


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))


@pytest.mark.parametrize(("n", "d", "tau"), [(1, 3, 0.1), (4, 8, 0.5), (17, 5, 0.07), (32, 128, 1.0)])
def test_info_nce_matches_the_literal_loop(n, d, tau):
    g = torch.Generator().manual_seed(n * d)
    a, b = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    assert float(info_nce(a, b, tau)) == pytest.approx(nt_xent_literal(a.numpy(), b.numpy(), tau), rel=1e-10)
    assert float(InfoNCE(tau)(a, b)) == pytest.approx(float(info_nce(a, b, tau)), rel=1e-12)


def test_info_nce_gradients_in_float64():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: info_nce(x, y, 0.3), (a, b))


def test_info_nce_is_low_for_aligned_pairs_and_scale_invariant():
    a = torch.eye(8)
    assert float(info_nce(a, a, 0.05)) < 1e-3  # each positive is the only similar sample
    b = torch.randn(8, 8, generator=torch.Generator().manual_seed(1))
    assert float(info_nce(3.0 * b, b, 0.2)) == pytest.approx(float(info_nce(b, b, 0.2)), rel=1e-6)


def test_info_nce_accepts_bf16():
    a, b = torch.randn(6, 8).bfloat16(), torch.randn(6, 8).bfloat16()
    assert info_nce(a, b).dtype == torch.float32


@pytest.mark.parametrize(("n", "d"), [(1, 4), (9, 16), (64, 32)])
def test_simsiam_matches_the_literal_loop(n, d):
    g = torch.Generator().manual_seed(n)
    p_a, p_b, z_a, z_b = (torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(4))
    literal = np.mean(
        [-cosine(p_a[i].numpy(), z_b[i].numpy()) / 2 - cosine(p_b[i].numpy(), z_a[i].numpy()) / 2 for i in range(n)]
    )
    assert float(simsiam_loss(p_a, p_b, z_a, z_b)) == pytest.approx(literal, rel=1e-10)


@pytest.mark.parametrize(("n", "d"), [(1, 4), (9, 16), (64, 32)])
def test_byol_matches_the_literal_loop(n, d):
    g = torch.Generator().manual_seed(n + 1)
    p_a, p_b, t_a, t_b = (torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(4))

    def nmse(p, t):
        p, t = p / np.linalg.norm(p), t / np.linalg.norm(t)
        return float(np.sum((p - t) ** 2))

    literal = np.mean([nmse(p_a[i].numpy(), t_b[i].numpy()) + nmse(p_b[i].numpy(), t_a[i].numpy()) for i in range(n)])
    assert float(byol_loss(p_a, p_b, t_a, t_b)) == pytest.approx(literal, rel=1e-10)


def test_stop_gradient_on_targets():
    p_a, p_b, z_a, z_b = (torch.randn(4, 8, requires_grad=True) for _ in range(4))
    simsiam_loss(p_a, p_b, z_a, z_b).backward()
    assert z_a.grad is None and z_b.grad is None and p_a.grad is not None
    q_a, q_b, t_a, t_b = (torch.randn(4, 8, requires_grad=True) for _ in range(4))
    byol_loss(q_a, q_b, t_a, t_b).backward()
    assert t_a.grad is None and t_b.grad is None and q_b.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"temperature": 0.0}, "temperature must be > 0"), ({"impl": "cuda-magic"}, "unknown info_nce impl")],
)
def test_info_nce_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        info_nce(torch.randn(2, 3), torch.randn(2, 3), **kwargs)
    with pytest.raises(InputError, match="same shape"):
        info_nce(torch.randn(2, 3), torch.randn(3, 3))


# -- distributed: 2 processes over gloo ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gathered_worker(rank: int, world: int, port: int, a: torch.Tensor, b: torch.Tensor, out: dict) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    n = a.shape[0] // world
    mine_a = a[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    mine_b = b[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    loss = info_nce(mine_a, mine_b, 0.2)
    loss.backward()
    out[rank] = (float(loss), mine_a.grad.clone(), mine_b.grad.clone())
    dist.destroy_process_group()


def test_gathered_info_nce_equals_the_single_process_loss_on_the_whole_batch():
    world, n = 2, 6
    g = torch.Generator().manual_seed(3)
    a, b = (
        torch.randn(world * n, 5, generator=g, dtype=torch.float64),
        torch.randn(world * n, 5, generator=g, dtype=torch.float64),
    )
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_gathered_worker, args=(world, _free_port(), a, b, out), nprocs=world, join=True)

    whole_a, whole_b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    whole = info_nce(whole_a, whole_b, 0.2)
    whole.backward()
    # each rank's loss is the mean over its rows; their average (what DDP optimises) is the whole loss
    assert np.mean([out[r][0] for r in range(world)]) == pytest.approx(float(whole.detach()), rel=1e-10)
    for r in range(world):
        rows = slice(r * n, (r + 1) * n)
        # DDP averages gradients over ranks; the gather's backward already summed every rank's share
        torch.testing.assert_close(out[r][1] / world, whole_a.grad[rows], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(out[r][2] / world, whole_b.grad[rows], rtol=1e-9, atol=1e-12)
