"""Probes: kNN against a literal loop; the linear probe against a literal gradient-descent solver, the Bayes
classifier of a problem with a known answer and scikit-learn (an independent solver, test-only) on a small
trained encoder's features; non-finite features and bad probe options refused; the table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mlvgm.errors import InputError
from mlvgm.probes import (
    NonFiniteFeatures,
    evaluate_backbones,
    fit_softmax,
    knn_accuracy,
    linear_probe,
    probes_markdown,
)


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
    top1, top5, _ = linear_probe(x[:600], y[:600], x[600:], y[600:], 4)
    assert top1 > 0.95 and top5 == 1.0
    noise = torch.randint(0, 4, (800,), generator=g)  # labels unrelated to the features
    top1, _, _ = linear_probe(x[:600], noise[:600], x[600:], noise[600:], 4)
    assert top1 < 0.4


def softmax_regression_literal(x, y, classes, weight_decay, *, steps=20_000, lr=0.5):
    """mean_i CE(W x_i + b, y_i) + wd / 2 ||W||^2 by plain gradient descent, written out in numpy."""
    n, features = x.shape
    weight, bias = np.zeros((classes, features)), np.zeros(classes)
    onehot = np.eye(classes)[y]
    for _ in range(steps):
        logits = x @ weight.T + bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        grad_logits = (p - onehot) / n
        weight -= lr * (grad_logits.T @ x + weight_decay * weight)
        bias -= lr * grad_logits.sum(axis=0)
    return weight, bias


@pytest.mark.parametrize("weight_decay", [1e-3, 1e-1])
def test_fit_softmax_reaches_the_literal_optimum(weight_decay):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 150)
    x = rng.normal(size=(150, 5)) + 0.8 * np.eye(3, 5)[y]
    weight, bias = softmax_regression_literal(x, y, 3, weight_decay)
    ours_w, ours_b = fit_softmax(torch.from_numpy(x), torch.from_numpy(y), 3, weight_decay)
    # the bias is determined up to a constant shared by every class: compare it centred
    np.testing.assert_allclose(ours_w.numpy(), weight, atol=2e-4)
    np.testing.assert_allclose(ours_b.numpy() - ours_b.numpy().mean(), bias - bias.mean(), atol=2e-4)


def test_the_probe_reads_what_the_bayes_classifier_reads():
    """Gaussian classes with a shared identity covariance: the Bayes rule is linear (argmax_c mu_c.x -
    |mu_c|^2 / 2), so a well-regularised probe must come within sampling error of its test accuracy."""
    g = torch.Generator().manual_seed(7)
    means = 0.2 * torch.randn(6, 32, generator=g, dtype=torch.float64)
    y = torch.randint(0, 6, (6000,), generator=g)
    x = means[y] + torch.randn(6000, 32, generator=g, dtype=torch.float64)
    train, test, y_train, y_test = x[:4000], x[4000:], y[:4000], y[4000:]
    bayes = float(((test @ means.T - 0.5 * (means * means).sum(dim=1)).argmax(dim=1) == y_test).double().mean())
    probe = linear_probe(train, y_train, test, y_test, 6)
    assert 0.3 < bayes < 0.9  # neither trivial nor hopeless
    assert probe.top1 == pytest.approx(bayes, abs=0.02)


def test_the_probe_chooses_its_weight_decay_as_scikit_learn_scores_the_same_split():
    """Many features, few samples, little signal: the grid's choice is the decay whose fit scores best on
    the held-out split, as an independent solver (scikit-learn, C = 1 / (wd n)) scores them."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(11)
    means = 0.25 * torch.randn(4, 64, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (700,), generator=g)
    x = means[y] + torch.randn(700, 64, generator=g, dtype=torch.float64)
    decays = (1e-4, 1e-2, 1.0)
    probe = linear_probe(x[:500], y[:500], x[500:], y[500:], 4, weight_decays=decays, seed=5)
    assert probe == linear_probe(x[:500], y[:500], x[500:], y[500:], 4, weight_decays=decays, seed=5)  # deterministic
    mean, std = x[:500].mean(dim=0), x[:500].std(dim=0) + 1e-6
    z = ((x[:500] - mean) / std).numpy()
    order = torch.randperm(500, generator=torch.Generator().manual_seed(5)).numpy()
    val, fit = order[:100], order[100:]
    scores = {}
    for decay in decays:
        model = sklearn.LogisticRegression(C=1 / (decay * len(fit)), max_iter=10_000, tol=1e-10)
        scores[decay] = model.fit(z[fit], y[fit].numpy()).score(z[val], y[val].numpy())
    best = max(scores.values())
    assert probe.weight_decay == max(d for d, s in scores.items() if s == best)  # ties: the stronger decay
    assert probe.weight_decay > min(decays)  # this problem needs regularisation


def test_the_probe_matches_scikit_learn_on_a_trained_encoders_features(tmp_path):
    """Real features: a small SimCLR encoder trained a few steps on the shapes world, its frozen features of
    held-out images; scikit-learn, choosing C on the same split from the same grid, is within 1 point."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    from mlvgm.checkpoint import load_checkpoint
    from mlvgm.generators import load_generator
    from mlvgm.probes import PROBE_WEIGHT_DECAYS, extract_features, generated_probe_set
    from mlvgm.recipe import build_method
    from mlvgm.train_config import TrainConfig
    from mlvgm.training import train as train_run

    config = TrainConfig(generator="shapes:resolution=32", epochs=1, epoch_images=320, batch_size=32, width=8,
                         proj_hidden=32, proj_dim=16, evaluate=False, log_every=5, amp="off")  # fmt: skip
    train_run(config, tmp_path / "run", progress=False)
    method = build_method(config)
    load_checkpoint(tmp_path / "run", method)
    g = load_generator("shapes:resolution=32")
    common = {"seed": 0, "size": 32, "truncation": 2.0, "device": torch.device("cpu")}
    images, labels = generated_probe_set(g, 1500, purpose="eval-train", **common)
    features = extract_features(method.backbone, images)
    train_f, test_f = features[:1000], features[1000:]
    mean, std = train_f.double().mean(dim=0), train_f.double().std(dim=0) + 1e-6
    z, z_test = ((train_f.double() - mean) / std).numpy(), ((test_f.double() - mean) / std).numpy()
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(0)).numpy()
    val, fit = order[:200], order[200:]
    for factor in ("shape", "color"):
        y = labels[factor]
        ours = linear_probe(train_f, y[:1000], test_f, y[1000:], g.factor_classes[factor])
        scores = {}
        for decay in PROBE_WEIGHT_DECAYS:
            model = sklearn.LogisticRegression(C=1 / (decay * len(fit)), max_iter=5000)
            scores[decay] = model.fit(z[fit], y[:1000][fit].numpy()).score(z[val], y[:1000][val].numpy())
        chosen = max(d for d, s in scores.items() if s == max(scores.values()))
        model = sklearn.LogisticRegression(C=1 / (chosen * 1000), max_iter=5000).fit(z, y[:1000].numpy())
        assert ours.top1 == pytest.approx(model.score(z_test, y[1000:].numpy()), abs=0.01), factor


def test_non_finite_features_are_refused_not_scored():
    """NaN is never larger than the true class's score, so NaN features used to score 100%."""
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(NonFiniteFeatures, match=r"1 of 40 rows .* diverged"):
        linear_probe(bad, y, x, y, 3)
    with pytest.raises(NonFiniteFeatures):
        linear_probe(x, y, bad.clamp(max=float("inf")) * float("inf"), y, 3)
    with pytest.raises(NonFiniteFeatures):
        knn_accuracy(x, y, bad, y, 3)

    class Diverged(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, images):
            return torch.full((len(images), 4), float("nan"))

    images = torch.zeros(10, 3, 8, 8)
    labels = {"shape": torch.zeros(10, dtype=torch.int64)}
    with pytest.raises(NonFiniteFeatures, match="trained encoder"):
        evaluate_backbones({"trained": Diverged()}, (images, labels), (images, labels), {"shape": 2},
                           device=torch.device("cpu"), progress=False)  # fmt: skip


@pytest.mark.parametrize(
    ("options", "match"),
    [({"weight_decays": ()}, "one or more"), ({"weight_decays": (1e-3, -1.0)}, ">= 0"),
     ({"weight_decays": (float("nan"),)}, "finite"), ({"val_share": 0.0}, "between 0 and 1"),
     ({"val_share": 1.0}, "between 0 and 1")],
)  # fmt: skip
def test_bad_probe_options_are_one_line(options, match):
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    with pytest.raises(InputError, match=match):
        linear_probe(x, y, x, y, 3, **options)


def test_probes_markdown():
    table = pd.DataFrame(
        [
            {"factor": "shape", "encoder": "trained", "classes": 12, "linear_top1": 0.5, "knn_top1": 0.25},
            {"factor": "shape", "encoder": "random init", "classes": 12, "linear_top1": 0.1, "knn_top1": 0.125},
        ]
    )
    lines = probes_markdown(table).splitlines()
    assert lines[2] == "| shape | 12 | 50.0 | 10.0 | 25.0 | 12.5 |"


@pytest.mark.parametrize(
    "argv", [["--probe_weight_decays", ""], ["--probe_val_share", "1.5"], ["--probe_weight_decays", "0.1,-2"]]
)
def test_bad_probe_options_on_the_command_line_exit_2_with_one_line(argv, tmp_path, capsys):
    from mlvgm.cli import run
    from mlvgm.train import main

    code = run(main, "python -m mlvgm.train", [*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "probe_" in err
    assert not (tmp_path / "run").exists()
