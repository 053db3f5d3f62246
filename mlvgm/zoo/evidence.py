"""`python -m mlvgm.zoo.evidence`: is the embedded model a generator of the shapes world? The figures that say so.

    python -m mlvgm.zoo.evidence --out results/embedded

writes into OUT:
    samples.png        an 8 x 8 grid of samples at the weights' temperature
    classes.png        a shape classifier trained on real shapes images: the class histogram of generated
                       and of real images, and its mean confidence against the sampling temperature
    classifier.csv     per class: the share of real and of generated images it is assigned to
    kl.png             the per-level KL of the trained VAE on held-out images (from the weights' JSON)
    views.png/.json    the view grid, `python -m mlvgm.grid --generator embedded`
    training-*         with --run RUN: the training's loss.png and metrics.csv
    evidence.json      every number above, with provenance
    README.md          the command, hardware, commit and the numbers

The classifier sees only real images (the shapes world at the VAE's training truncation, labelled by
the world's own `factors`); generated images are then judged by it, as an Inception score judges a GAN
with a classifier trained on real data.

The arguments are checked before torch loads; the judging itself is mlvgm.zoo.judging.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlvgm.cli import run
from mlvgm.config import parse_config
from mlvgm.io import check_creatable
from mlvgm.zoo.configs import EvidenceConfig

__all__ = ["EvidenceConfig", "main"]


def main(argv: Sequence[str] | None = None) -> dict:
    config, _, _ = parse_config(
        EvidenceConfig, None, argv, prog="python -m mlvgm.zoo.evidence",
        description="Judge the embedded generator: samples, a shape classifier's verdict on them, per-level KL, "
        "the view grid.",
    )  # fmt: skip
    check_creatable(config.out)
    from mlvgm.zoo.judging import evidence  # loads torch: only once the arguments have passed

    return evidence(config)


if __name__ == "__main__":
    raise SystemExit(run(main, "mlvgm.zoo.evidence"))
