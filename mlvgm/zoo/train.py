"""`python -m mlvgm.zoo.train`: train the embedded hierarchical VAE on the shapes world.

    python -m mlvgm.zoo.train --out runs/zoo/embedded       # about 40 min on 2 CPU cores (bf16), an hour in fp32
    python -m mlvgm.zoo.train --out runs/zoo/embedded --publish mlvgm/generators/weights   # and ship the result

Every step draws a fresh batch of shapes-world images (the same truncation as `mlvgm.data.export`), so
the VAE never sees an image twice and batch s is a function of (seed, s): a resumed run (`--resume`,
the default when RUN has a checkpoint) continues exactly. The weights shipped are an exponential moving
average of the trained ones. RUN gets metrics.csv, loss.png (-ELBO and KL per level against step),
samples.png and, at the end, embedded.safetensors + embedded.json (the decoder and its config, with the
per-level KL measured on held-out images); `--publish DIR` copies those two files into DIR.

The arguments are checked before torch loads; the training itself is mlvgm.zoo.training.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlvgm.cli import run
from mlvgm.config import parse_config
from mlvgm.io import check_creatable
from mlvgm.zoo.configs import ZooTrainConfig, learning_rate

__all__ = ["ZooTrainConfig", "learning_rate", "main"]


def main(argv: Sequence[str] | None = None) -> dict:
    config, _, _ = parse_config(
        ZooTrainConfig, None, argv, prog="python -m mlvgm.zoo.train",
        description="Train the embedded hierarchical VAE (load_generator('embedded')) on the shapes world.",
    )  # fmt: skip
    check_creatable(config.out)
    if config.publish:
        check_creatable(config.publish, flag="--publish")
    from mlvgm.zoo.training import train  # loads torch: only once the arguments have passed

    return train(config)


if __name__ == "__main__":
    raise SystemExit(run(main, "mlvgm.zoo.train"))
