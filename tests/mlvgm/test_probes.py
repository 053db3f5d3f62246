"""Probes: kNN against a literal loop, the linear probe on data with a known answer, the table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mlvgm.probes import knn_accuracy, linear_probe, probes_markdown


def knn_literal(train, train_y, test, classes, k, temperature):
    """InstDisc's weighted kNN, one test sample at a time."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    predictions = []
    for x in test:
        sims = train @ x
        nearest = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(classes)
        for j in nearest:
            votes[train_y[j]] += math.exp(sims[j] / temperature)
        predictions.append(votes)
    return predictions


def within(votes: np.ndarray, label: int, k: int) -> bool:
    """The true class is among the top k: voted for, and fewer than k classes have more votes."""
    return votes[label] > 0 and sum(v > votes[label] for v in votes) < k


@pytest.mark.parametrize(("k", "temperature"), [(1, 0.07), (5, 0.5), (20, 0.07)])
def test_knn_matches_the_literal_loop(k, temperature):
    g = torch.Generator().manual_seed(k)
    train, test = (
        torch.randn(60, 6, generator=g, dtype=torch.float64),
        torch.randn(25, 6, generator=g, dtype=torch.float64),
    )
    train_y, test_y = torch.randint(0, 7, (60,), generator=g), torch.randint(0, 7, (25,), generator=g)
    votes = knn_literal(train.numpy(), train_y.numpy(), test.numpy(), 7, k, temperature)
    top1 = np.mean([within(v, y, 1) for v, y in zip(votes, test_y.numpy(), strict=True)])
    top5 = np.mean([within(v, y, 5) for v, y in zip(votes, test_y.numpy(), strict=True)])
    assert knn_accuracy(train, train_y, test, test_y, 7, k=k, temperature=temperature) == pytest.approx((top1, top5))


def test_linear_probe_learns_a_separable_problem_and_not_noise():
    g = torch.Generator().manual_seed(0)
    centres = 4.0 * torch.randn(4, 16, generator=g)
    y = torch.randint(0, 4, (800,), generator=g)
    x = centres[y] + torch.randn(800, 16, generator=g)
    top1, top5 = linear_probe(x[:600], y[:600], x[600:], y[600:], 4, epochs=20)
    assert top1 > 0.95 and top5 == 1.0
    noise = torch.randint(0, 4, (800,), generator=g)  # labels unrelated to the features
    top1, _ = linear_probe(x[:600], noise[:600], x[600:], noise[600:], 4, epochs=20)
    assert top1 < 0.4


def test_probes_markdown():
    table = pd.DataFrame(
        [
            {"factor": "shape", "encoder": "trained", "classes": 12, "linear_top1": 0.5, "knn_top1": 0.25},
            {"factor": "shape", "encoder": "random init", "classes": 12, "linear_top1": 0.1, "knn_top1": 0.125},
        ]
    )
    lines = probes_markdown(table).splitlines()
    assert lines[2] == "| shape | 12 | 50.0 | 10.0 | 25.0 | 12.5 |"
