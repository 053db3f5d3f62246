"""Distances between a generated and a real image set in a feature space: the Frechet distance, and
precision and recall by k-nearest-neighbour balls (Kynkaanniemi et al. 2019, "Improved precision and
recall metric for assessing generative models").

Both take (N, F) feature matrices. mlvgm.zoo.judging feeds them the pooled features of a classifier trained
on real shapes-world images; the functions themselves know nothing of images.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK = 1024  # rows of a distance matrix held at once: 1024 x 4096 float32 is 16 MB


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of Gaussians fitted to the rows of a and b.

    The trace of the matrix root is computed as the sum of the square roots of the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2), which has the same eigenvalues as S_a S_b and is symmetric, so a symmetric
    eigensolver in float64 suffices (no general matrix square root, no complex parts to discard)."""
    _check_pair(a, b, need=2)
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T).reshape(a.shape[1], a.shape[1]), torch.cov(b.T).reshape(b.shape[1], b.shape[1])
    values, vectors = torch.linalg.eigh(s_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    middle = root_a @ s_b @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + torch.trace(s_a) + torch.trace(s_b) - 2 * cross)


def knn_radii(x: Tensor, k: int) -> Tensor:
    """(N,) distance from each row of x to its k-th nearest other row."""
    radii = []
    for i in range(0, x.shape[0], CHUNK):
        d = torch.cdist(x[i : i + CHUNK], x)  # (chunk, N); the row itself is at distance 0, the smallest
        radii.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def coverage_of(points: Tensor, centres: Tensor, radii: Tensor) -> Tensor:
    """(M,) bool: whether each row of points lies in at least one ball (centres[j], radii[j])."""
    inside = []
    for i in range(0, points.shape[0], CHUNK):
        d = torch.cdist(points[i : i + CHUNK], centres)  # (chunk, N)
        inside.append((d <= radii.unsqueeze(0)).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> dict[str, float]:
    """Precision: the share of generated samples inside the real manifold (the union of balls around each
    real sample reaching its k-th nearest real neighbour); recall: the share of real samples inside the
    generated manifold, built alike. Both in [0, 1]."""
    _check_pair(real, fake, need=k + 1)
    real, fake = real.float(), fake.float()
    real_radii, fake_radii = knn_radii(real, k), knn_radii(fake, k)
    return {
        "precision": float(coverage_of(fake, real, real_radii).float().mean()),
        "recall": float(coverage_of(real, fake, fake_radii).float().mean()),
        "k": k,
    }


def _check_pair(a: Tensor, b: Tensor, *, need: int) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, F) with one F, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[0], b.shape[0]) < need:
        raise ValueError(f"each feature set needs at least {need} rows, got {a.shape[0]} and {b.shape[0]}")
