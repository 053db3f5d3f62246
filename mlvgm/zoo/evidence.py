"""`python -m mlvgm.zoo.evidence`: is the embedded model a generator of the shapes world? The figures that say so.

    python -m mlvgm.zoo.evidence --out results/embedded --run runs/zoo/embedded \
        --baseline embedded:weights=OLD.safetensors

writes into OUT:
    samples.png          an 8 x 8 grid of samples at the weights' temperature
    classes.png          a factor classifier trained on real shapes images: the shape classes and the other factors'
                         marginals of real, generated and baseline images, and the mean confidence against temperature
    classifier.csv       per shape class: the share of real and of generated images it is assigned to
    flips.png/.csv       per level and sigma, how often each factor changes between anchor and positive
    reconstructions.png  with --run RUN: held-out real images and their reconstructions
    depth.png            with --run RUN: real images decoded from the posterior of z1..zk and the prior below, and
                         per factor how often it still reads as the original's: which levels fix it
    kl.png               the per-level KL of the trained VAE on held-out images (from the weights' JSON)
    views.png/.json      the view grid, `python -m mlvgm.grid --generator embedded`
    training-*           with --run RUN: the training's loss.png and metrics.csv
    evidence.json        every number above, with provenance
    README.md            the command, hardware, commit, the numbers and docs/embedded.md's thresholds

The classifier sees only real images (the shapes world at the VAE's training truncation, labelled by the
world's own `factors`); generated images are then judged by it, as an Inception score judges a GAN with a
classifier trained on real data: its confidence, its class shares, and the Frechet distance and
precision/recall in its feature space, each beside the value a second set of real images gets.

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
        description="Judge the embedded generator: samples, a factor classifier's verdict on them against real images, "
        "reconstructions, which level carries which factor, per-level KL, the view grid.",
    )  # fmt: skip
    check_creatable(config.out)
    from mlvgm.zoo.judging import evidence  # loads torch: only once the arguments have passed

    return evidence(config)


if __name__ == "__main__":
    raise SystemExit(run(main, "mlvgm.zoo.evidence"))
