"""mlvgm.zoo.fidelity against literal references: the Frechet distance by scipy's general matrix square root
of S_a S_b (not the symmetric eigen route the library takes), precision and recall by explicit loops over
every pair of points."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from mlvgm.zoo import fidelity
from mlvgm.zoo.fidelity import frechet_distance, precision_recall


def frechet_literal(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(root))


def precision_recall_literal(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radius(points: np.ndarray, i: int) -> float:
        others = sorted(math.dist(points[i], points[j]) for j in range(len(points)) if j != i)
        return others[k - 1]

    def inside(point: np.ndarray, centres: np.ndarray) -> bool:
        return any(math.dist(point, centres[j]) <= radius(centres, j) for j in range(len(centres)))

    precision = sum(inside(p, real) for p in fake) / len(fake)
    recall = sum(inside(p, fake) for p in real) / len(real)
    return precision, recall


def test_frechet_distance_matches_the_general_matrix_root():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) + 0.7
    expected = frechet_literal(a, b)
    assert frechet_distance(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == pytest.approx(
        expected, rel=1e-4
    )


def test_frechet_distance_of_known_gaussians_and_of_a_set_with_itself():
    # N(0, I) against N(m, 4 I) in d dims: ||m||^2 + d (1 + 4 - 2 * 2) = ||m||^2 + d, here 9 + 4 = 13 in the limit
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(200_000, 4, generator=gen, dtype=torch.float64)
    shift = torch.tensor([3.0, 0, 0, 0], dtype=torch.float64)
    b = 2 * torch.randn(200_000, 4, generator=gen, dtype=torch.float64) + shift
    assert frechet_distance(a, b) == pytest.approx(13.0, rel=0.01)
    assert frechet_distance(a[:500], a[:500]) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("k", [1, 3])
def test_precision_recall_match_explicit_loops(k, monkeypatch):
    monkeypatch.setattr(fidelity, "CHUNK", 7)  # the chunked distances must join up as one matrix would
    rng = np.random.default_rng(k)
    real = rng.normal(size=(40, 3))
    fake = rng.normal(size=(30, 3)) * 0.6 + 0.8  # narrower and shifted: both figures strictly between 0 and 1
    got = precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=k)
    precision, recall = precision_recall_literal(real, fake, k)
    assert (got["precision"], got["recall"]) == pytest.approx((precision, recall))
    assert 0 < precision < 1 and 0 < recall < 1


def test_precision_recall_of_a_collapsed_generator():
    # every fake at one real point: all inside the real manifold (precision 1), covering almost none of it
    real = torch.randn(200, 5, generator=torch.Generator().manual_seed(2))
    fake = real[:1].repeat(50, 1) + 1e-6 * torch.randn(50, 5, generator=torch.Generator().manual_seed(3))
    got = precision_recall(real, fake, k=3)
    assert got["precision"] == 1.0 and got["recall"] < 0.05


def test_feature_sets_of_different_width_or_too_few_rows_are_refused():
    with pytest.raises(ValueError, match="one F"):
        frechet_distance(torch.zeros(10, 3), torch.zeros(10, 4))
    with pytest.raises(ValueError, match="at least 4 rows"):
        precision_recall(torch.zeros(3, 2), torch.zeros(10, 2), k=3)
