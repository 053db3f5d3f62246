"""The linear probe against an independent solver, on a run's own frozen features.

    python -m bench.probe_check --run RUN [--out results/quickstart/probe-check.md]

For the run's trained encoder and its initialisation, on the probe images `python -m mlvgm.evaluate` uses
(the shapes world's held-out streams), it fits mlvgm's linear probe (weight decay chosen on a validation
split, mlvgm.probes) and scikit-learn's multinomial LogisticRegression (lbfgs), whose inverse penalty C is
chosen from its own grid on a 20% validation split of the same standardised train features, then refitted
on all of them. scikit-learn is a test-only dependency (pip install scikit-learn, part of `.[dev]`); the
table says how far the two read apart, factor by factor.
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
from mlvgm.probes import extract_features, generated_probe_set, linear_probe
from mlvgm.provenance import provenance, provenance_line
from mlvgm.recipe import build_method, initial_backbone, spec
from mlvgm.runs import load_run_config

SKLEARN_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # the grid of the issue that found the probe overfitting


@dataclass(frozen=True, kw_only=True)
class ProbeCheckConfig:
    run: str = option(help="run folder written by python -m mlvgm.train (a shapes-world run)")
    out: str = option("", "markdown table to write (default: print only)")


def sklearn_probe(train: np.ndarray, y: np.ndarray, test: np.ndarray, y_test: np.ndarray, *, seed: int):
    """(top-1, chosen C) of LogisticRegression with C chosen on a 20% split of the standardised train features."""
    from sklearn.linear_model import LogisticRegression

    mean, std = train.mean(axis=0), train.std(axis=0, ddof=1) + 1e-6
    x, x_test = (train - mean) / std, (test - mean) / std
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
             "| encoder | factor | mlvgm (weight decay) | scikit-learn (C) | mlvgm - scikit-learn |",
             "|---|---|---|---|---|"]  # fmt: skip
    worst = 0.0
    for name, backbone in {"trained": method.backbone, "random init": initial_backbone(config, device)}.items():
        train_f, test_f = extract_features(backbone, train_x), extract_features(backbone, test_x)
        for factor, classes in g.factor_classes.items():
            ours = linear_probe(train_f, train_y[factor], test_f, test_y[factor], classes,
                                weight_decays=config.probe_weight_decays, val_share=config.probe_val_share,
                                seed=config.seed)  # fmt: skip
            theirs, c = sklearn_probe(train_f.double().numpy(), train_y[factor].numpy(), test_f.double().numpy(),
                                      test_y[factor].numpy(), seed=config.seed)  # fmt: skip
            worst = max(worst, abs(ours.top1 - theirs))
            lines.append(f"| {name} | {factor} | {100 * ours.top1:.1f} ({ours.weight_decay:g}) | "
                         f"{100 * theirs:.1f} ({c:g}) | {100 * (ours.top1 - theirs):+.1f} |")  # fmt: skip
    lines += ["", f"Largest difference: {100 * worst:.1f} points."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return text


if __name__ == "__main__":
    sys.exit(run(main, "python -m bench.probe_check"))
