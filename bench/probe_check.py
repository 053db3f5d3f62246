"""The linear probe against an independent solver, on a run's own frozen features.

    python -m bench.probe_check --run RUN [--out results/quickstart/probe-check.md]

For the run's trained encoder and its initialisation, on the probe images `python -m mlvgm.evaluate` uses
(the shapes world's held-out streams), it fits mlvgm's linear probe (weight decay chosen on a validation
split, mlvgm.probes) and scikit-learn's multinomial LogisticRegression (lbfgs) twice on the same
standardised features:

- the same procedure: the same weight-decay grid (as C = 1 / (weight decay * samples), the same penalty),
  the same validation split and tie rule, then refitted on all train features. Differences here are the
  solvers' own; this column is the check (within 1 point on every factor).
- its own grid: C from a 1e-3..100 grid on a 20% split of its own, as the issue that found the old probe
  overfitting did. Differences here also hold which penalty each validation split happened to prefer.

scikit-learn is a test-only dependency (pip install scikit-learn, part of `.[dev]`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlvgm.checkpoint import load_checkpoint
from mlvgm.cli import run
from mlvgm.config import option, parse_config
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.io import atomic_write_text, check_output_file
from mlvgm.probes import extract_features, generated_probe_set, linear_probe, validation_split
from mlvgm.provenance import provenance, provenance_line
from mlvgm.recipe import build_method, initial_backbone, spec
from mlvgm.runs import load_run_config

SKLEARN_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # the grid of the issue that found the probe overfitting


@dataclass(frozen=True, kw_only=True)
class ProbeCheckConfig:
    run: str = option(help="run folder written by python -m mlvgm.train (a shapes-world run)")
    out: str = option("", "markdown table to write (default: print only)")


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0, ddof=1) + 1e-6
    return (train - mean) / std, (test - mean) / std


def sklearn_same_procedure(train, y, test, y_test, *, decays, val_share: float, seed: int):
    """(top-1, chosen weight decay) of LogisticRegression run through mlvgm's selection: same grid, split and ties."""
    from sklearn.linear_model import LogisticRegression

    x, x_test = _standardise(train, test)
    fit, val = (i.numpy() for i in validation_split(len(x), val_share, seed))
    best, best_accuracy = None, -1.0
    for decay in sorted(decays, reverse=True):
        model = LogisticRegression(C=1 / (decay * len(fit)), max_iter=10_000, tol=1e-8).fit(x[fit], y[fit])
        accuracy = model.score(x[val], y[val])
        if accuracy > best_accuracy:  # strict: a tie keeps the larger decay, as mlvgm.probes does
            best, best_accuracy = decay, accuracy
    model = LogisticRegression(C=1 / (best * len(x)), max_iter=10_000, tol=1e-8).fit(x, y)
    return model.score(x_test, y_test), best


def sklearn_own_grid(train, y, test, y_test, *, seed: int):
    """(top-1, chosen C) of LogisticRegression with C chosen on its own 20% split of the standardised features."""
    from sklearn.linear_model import LogisticRegression

    x, x_test = _standardise(train, test)
    order = np.random.default_rng(seed).permutation(len(x))
    val, fit = order[: len(x) // 5], order[len(x) // 5 :]
    scores = {c: LogisticRegression(C=c, max_iter=5000).fit(x[fit], y[fit]).score(x[val], y[val]) for c in SKLEARN_C}
    best = max(scores, key=lambda c: (scores[c], -c))  # ties: the stronger penalty
    return LogisticRegression(C=best, max_iter=5000).fit(x, y).score(x_test, y_test), best


def main(argv: Sequence[str] | None = None) -> str:
    args, _, _ = parse_config(ProbeCheckConfig, None, argv, prog="python -m bench.probe_check",
                              description=__doc__.split("\n\n")[0])  # fmt: skip
    if args.out:
        check_output_file(args.out, suffixes=(".md",))
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise InputError("scikit-learn is not installed: pip install scikit-learn (or .[dev])") from None
    run_dir = Path(args.run)
    config, _ = load_run_config(run_dir)
    if config.source != "cs":
        raise InputError(f"{run_dir} trained on an image folder: this check reads a generator's factors")
    device = torch.device("cpu")
    record = provenance({"run": str(run_dir)})
    print(provenance_line(record))
    torch.manual_seed(config.seed)
    method = build_method(config)
    step = load_checkpoint(run_dir, method)["step"]
    g = load_generator(spec(config), device=device)
    common = {"seed": config.seed, "size": config.crop or g.resolution, "truncation": config.truncation,
              "device": device}  # fmt: skip
    train_x, train_y = generated_probe_set(g, config.eval_train, purpose="eval-train", **common)
    test_x, test_y = generated_probe_set(g, config.eval_test, purpose="eval-test", **common)
    lines = [f"Run `{run_dir}` at step {step}; {config.eval_train:,} + {config.eval_test:,} probe images; "
             f"{provenance_line(record)}.", "",
             "| encoder | factor | mlvgm (weight decay) | scikit-learn, same procedure (weight decay) | difference "
             "| scikit-learn, own grid (C) | difference |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    worst_same, worst_own = 0.0, 0.0
    for name, backbone in {"trained": method.backbone, "random init": initial_backbone(config, device)}.items():
        train_f, test_f = extract_features(backbone, train_x), extract_features(backbone, test_x)
        arrays = (train_f.double().numpy(), test_f.double().numpy())
        for factor, classes in g.factor_classes.items():
            y, y_test = train_y[factor].numpy(), test_y[factor].numpy()
            ours = linear_probe(train_f, train_y[factor], test_f, test_y[factor], classes,
                                weight_decays=config.probe_weight_decays, val_share=config.probe_val_share,
                                seed=config.seed)  # fmt: skip
            same, decay = sklearn_same_procedure(arrays[0], y, arrays[1], y_test, decays=config.probe_weight_decays,
                                                 val_share=config.probe_val_share, seed=config.seed)  # fmt: skip
            own, c = sklearn_own_grid(arrays[0], y, arrays[1], y_test, seed=config.seed)
            worst_same, worst_own = max(worst_same, abs(ours.top1 - same)), max(worst_own, abs(ours.top1 - own))
            lines.append(f"| {name} | {factor} | {100 * ours.top1:.1f} ({ours.weight_decay:g}) | "
                         f"{100 * same:.1f} ({decay:g}) | {100 * (ours.top1 - same):+.1f} | "
                         f"{100 * own:.1f} ({c:g}) | {100 * (ours.top1 - own):+.1f} |")  # fmt: skip
    lines += [
        "",
        f"Largest difference: {100 * worst_same:.1f} points from scikit-learn by the same procedure (the "
        f"check: within 1 point), {100 * worst_own:.1f} points from scikit-learn on its own grid and split.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return text


if __name__ == "__main__":
    sys.exit(run(main, "python -m bench.probe_check"))
