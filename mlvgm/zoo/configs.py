"""The configs of `python -m mlvgm.zoo.train` and `python -m mlvgm.zoo.evidence`, without torch: the commands
check their arguments with these before they import the training (mlvgm.zoo.training) or the judging
(mlvgm.zoo.judging), and those import them from here, not from the commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlvgm.config import AMP_MODES, amp_option, check_choices, check_ranges, device_option, option
from mlvgm.errors import InputError
from mlvgm.options import BUILT_IN_WORLDS, CHECKPOINT_GENERATORS
from mlvgm.schedule import warmup_cosine


@dataclass(frozen=True)
class ZooTrainConfig:
    out: str = option("runs/zoo/embedded", "run folder (resumed when it holds a checkpoint)")
    steps: int = option(15_000, "training steps")
    batch_size: int = option(64, "images per step, fresh from the shapes world")
    resolution: int = option(32, "image side: 32 (64 quadruples the cost)")
    lr: float = option(2e-3, "Adam's peak learning rate (linear warm-up, then cosine to a tenth)")
    warmup: int = option(200, "learning-rate warm-up steps")
    kl_warmup: int = option(2_000, "steps over which the KL weight rises linearly from 0 to 1")
    ema: float = option(0.999, "decay of the weights' moving average (the weights shipped)")
    clip: float = option(5.0, "gradient-norm clip; a step whose norm exceeds 20x this is skipped")
    truncation: float = option(2.0, "truncation of the shapes world's latents (as mlvgm.data.export's)")
    seed: int = option(0, "seed of the image stream and the initialisation")
    eval_images: int = option(2_048, "held-out images the final per-level KL is measured on")
    checkpoint_every: int = option(1_000, "steps between checkpoints")
    log_every: int = option(50, "steps between rows of metrics.csv")
    amp: str = amp_option()
    publish: str = option("", "copy embedded.safetensors and .json here at the end (mlvgm/generators/weights ships)")
    device: str = device_option()

    def __post_init__(self) -> None:
        check_ranges(self, positive=("steps", "batch_size", "eval_images", "checkpoint_every", "log_every"), flag="--")
        if self.resolution not in (32, 64):
            raise InputError(f"--resolution must be 32 or 64, got {self.resolution}")
        if not 0 <= self.ema < 1:
            raise InputError(f"--ema must be in [0, 1), got {self.ema}")
        check_choices(self, {"amp": AMP_MODES}, flag="--")


def learning_rate(config: ZooTrainConfig, step: int) -> float:
    """Linear warm-up to --lr, then cosine decay to a tenth of it at the last step."""
    return warmup_cosine(step, peak=config.lr, warmup=config.warmup, total=config.steps, floor=0.1)


@dataclass(frozen=True)
class EvidenceConfig:
    out: str = option("results/embedded", "folder of the figures, evidence.json and README.md")
    generator: str = option("embedded", "the generator spec to judge (embedded[:weights=PATH] for another training)")
    run: str = option("", "the weights' training run folder: its loss.png and metrics.csv are copied in as training-*")
    classifier_steps: int = option(1_500, "training steps of the shape classifier (batches of 128 real images)")
    images: int = option(4_096, "generated (and real) images the classifier judges")
    temperatures: tuple[float, ...] = option((0.6, 0.8, 1.0), "sampling temperatures the confidence is measured at")
    truncation: float = option(2.0, "truncation of the real images' latents (the VAE's training data)")
    seed: int = option(0, "seed of the classifier and of the images")
    device: str = device_option()

    def __post_init__(self) -> None:
        check_ranges(self, positive=("classifier_steps", "images"), flag="--")
        if not self.temperatures or not all(0 < t <= 2 for t in self.temperatures):
            raise InputError(f"--temperatures must be in (0, 2], got {self.temperatures}")
        if self.run and not (Path(self.run) / "metrics.csv").is_file():
            raise InputError(f"--run {self.run} has no metrics.csv: give the folder python -m mlvgm.zoo.train wrote")
        # the other built-in generators, refused by name before any weights load (mlvgm.zoo.judging refuses the rest)
        if self.generator.partition(":")[0].strip() in {*BUILT_IN_WORLDS, *CHECKPOINT_GENERATORS} - {"embedded"}:
            raise InputError(f"{self.generator} is not an embedded generator: give embedded[:weights=PATH]")
