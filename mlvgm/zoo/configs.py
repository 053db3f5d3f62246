"""The configs of `python -m mlvgm.zoo.train` and `python -m mlvgm.zoo.evidence`, without torch: the commands
check their arguments with these before they import the training (mlvgm.zoo.training) or the judging
(mlvgm.zoo.judging), and those import them from here, not from the commands.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from mlvgm.config import AMP_MODES, amp_option, check_choices, check_ranges, device_option, option
from mlvgm.errors import InputError
from mlvgm.options import BUILT_IN_WORLDS, CHECKPOINT_GENERATORS, HVAE_LEVELS, HVAE_LIKELIHOODS
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
    likelihood: str = option("gaussian", "the pixel likelihood: gaussian or logistic_mixture (8-bit, PixelCNN++'s)")
    mixtures: int = option(10, "components of the logistic mixture per pixel")
    sigma_x: float = option(0.1, "the Gaussian likelihood's scale per pixel, fixed (0: learned per colour channel)")
    width: float = option(1.0, "a multiplier on every resolution's channels (1: 32 to 64)")
    cells: int = option(1, "residual cells per resolution, in the encoder and in the decoder")
    groups: int = option(1, "latent groups per level (its channels split), each group's prior conditioned on the "
                            "groups before it")  # fmt: skip
    position_bias: bool = option(True, "a learned feature map at every resolution after upsampling (VDVAE's), so "
                                       "that the decoder knows where it draws")  # fmt: skip
    strided: bool = option(False, "2x2 stride-2 convolutions between resolutions (their transposes on the way up) "
                                  "instead of average pooling and nearest upsampling")  # fmt: skip
    # z1..z2 carry the shape at weight 1 with 12 nats free; z3-z5 are capped (4 nats free, 1,000 per nat above), so
    # that each carries some detail and none takes the shape (results/embedded/pilots, round 5)
    level_kl_weights: tuple[float, ...] = option((1.0, 1.0, 1000.0, 1000.0, 1000.0), "a weight per level on its KL "
                                                 "in the loss (empty: all 1)")  # fmt: skip
    free_nats: tuple[float, ...] = option((12.0, 12.0, 4.0, 4.0, 4.0), "per level, the batch-mean KL (nats per "
                                          "image) it gets free: it pays only above it (empty: none)")  # fmt: skip
    progressive: int = option(0, "steps between the levels' entries, coarsest first: until its turn a level is its "
                                 "prior mean and pays no KL (0: all from the start)")  # fmt: skip
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
        check_choices(self, {"amp": AMP_MODES, "likelihood": HVAE_LIKELIHOODS}, flag="--")
        if not 0.25 <= self.width <= 8:
            raise InputError(f"--width must be in [0.25, 8], got {self.width}")
        if not 1 <= self.cells <= 16:
            raise InputError(f"--cells must be in [1, 16], got {self.cells}")
        if self.groups not in (1, 2):
            raise InputError(f"--groups must be 1 or 2 (they split every level's channels: 16, 8, 4, 4, 2), "
                             f"got {self.groups}")  # fmt: skip
        if not 0 <= self.progressive or (self.progressive and self.progressive * (HVAE_LEVELS - 1) >= self.steps):
            raise InputError(f"--progressive must be 0 (off) or a step count whose {HVAE_LEVELS - 1} entries end "
                             f"before --steps ({self.steps}), got {self.progressive}")  # fmt: skip
        if not 1 <= self.mixtures <= 64:
            raise InputError(f"--mixtures must be in [1, 64], got {self.mixtures}")
        if not (self.sigma_x == 0 or 1e-3 <= self.sigma_x <= 1):
            raise InputError(f"--sigma_x must be 0 (learned) or in [0.001, 1], got {self.sigma_x}")
        for flag, noun in (("level_kl_weights", "weights"), ("free_nats", "values")):
            values = getattr(self, flag)
            if values and (len(values) != HVAE_LEVELS or not all(0 <= v <= 1e4 for v in values)):
                raise InputError(f"--{flag} must be {HVAE_LEVELS} {noun} in [0, 10000], one per level, "
                                 f"got {','.join(f'{v:g}' for v in values)}")  # fmt: skip


# what the first weights' JSON does not name, at the values they were trained with
FIRST_WEIGHTS_TRAINING = {"likelihood": "gaussian", "mixtures": 10, "width": 1.0, "cells": 1, "level_kl_weights": (),
                          "sigma_x": 0.0, "free_nats": (), "groups": 1, "progressive": 0,
                          "position_bias": False, "strided": False}  # fmt: skip
RUN_ONLY = ("out", "publish", "device", "checkpoint_every", "log_every", "amp")  # where and how, not what is trained


def training_command(training: dict) -> str:
    """The `python -m mlvgm.zoo.train` command that trains weights whose JSON records `training`: the arguments
    that differ from today's defaults."""
    args = []
    for name, default in dataclasses.asdict(ZooTrainConfig()).items():
        value = training.get(name, FIRST_WEIGHTS_TRAINING.get(name, default))
        value = tuple(value) if isinstance(default, tuple) else value
        if name not in RUN_ONLY and value != default:
            shown = (",".join(f"{v:g}" for v in value) or "''") if isinstance(value, tuple) else (
                str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float)
                else str(value))  # fmt: skip
            args.append(f"--{name} {shown}")
    return " ".join(["python -m mlvgm.zoo.train", *args])


def active_levels(config: ZooTrainConfig, step: int) -> int | None:
    """The levels a progressive training has entered before `step` (None: all, no schedule)."""
    return None if not config.progressive else min(HVAE_LEVELS, 1 + step // config.progressive)


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
    baseline: str = option("", "another embedded generator judged alike, side by side (embedded:weights=PATH)")
    temperatures: tuple[float, ...] = option((0.6, 0.8, 1.0), "sampling temperatures the images are judged at")
    pairs: int = option(512, "anchor/positive pairs per level and sigma of the factor flip rates")
    truncation: float = option(2.0, "truncation of the real images' latents (the VAE's training data)")
    seed: int = option(0, "seed of the classifier and of the images")
    device: str = device_option()

    def __post_init__(self) -> None:
        check_ranges(self, positive=("classifier_steps", "images", "pairs"), flag="--")
        if self.images < 4:
            raise InputError(f"--images must be at least 4 (precision and recall need k + 1 = 4), got {self.images}")
        if not self.temperatures or not all(0 < t <= 2 for t in self.temperatures):
            raise InputError(f"--temperatures must be in (0, 2], got {self.temperatures}")
        if self.run and not (Path(self.run) / "metrics.csv").is_file():
            raise InputError(f"--run {self.run} has no metrics.csv: give the folder python -m mlvgm.zoo.train wrote")
        # the other built-in generators, refused by name before any weights load (mlvgm.zoo.judging refuses the rest)
        for flag, spec in (("--generator", self.generator), ("--baseline", self.baseline)):
            if spec.partition(":")[0].strip() in {*BUILT_IN_WORLDS, *CHECKPOINT_GENERATORS} - {"embedded"}:
                raise InputError(f"{flag} {spec} is not an embedded generator: give embedded[:weights=PATH]")


@dataclass(frozen=True)
class ControlConfig:
    out: str = option("results/embedded/control", "folder of README.md, control.json, control.csv and control.png")
    runs: str = option("runs/zoo/control", "folder of the trainings and quantifications (each resumed or reused)")
    seeds: int = option(3, "variants, trained with seeds 0..seeds-1, each quantified with its own seed")
    level: int = option(2, "the level (1-based) whose KL the variant weighs heavily")
    weight: float = option(50.0, "that level's KL weight in the loss")
    steps: int = option(ZooTrainConfig().steps, "training steps of each variant (the shipped training's by default)")
    quantify_samples: int = option(64 * 4000, "walker budget per level (samples), as Table 1's on the embedded VAE")
    amp: str = amp_option()
    device: str = device_option()

    def __post_init__(self) -> None:
        check_ranges(self, positive=("seeds", "steps", "quantify_samples", "weight"), flag="--")
        if not 1 <= self.level <= HVAE_LEVELS:
            raise InputError(f"--level must be in [1, {HVAE_LEVELS}], got {self.level}")
        check_choices(self, {"amp": AMP_MODES}, flag="--")

    def train_config(self, seed: int) -> ZooTrainConfig:
        """The variant of seed `seed`: the shipped training with one level's KL weighed by --weight and none of
        it free (the other levels keep the shipped training's weights and free nats)."""
        shipped = ZooTrainConfig()
        weights = tuple(self.weight if i + 1 == self.level else w
                        for i, w in enumerate(shipped.level_kl_weights or (1.0,) * HVAE_LEVELS))  # fmt: skip
        # free nats above the 1-nat collapse threshold would let the level keep them however dear its KL
        free = tuple(0.0 if i + 1 == self.level else f for i, f in enumerate(shipped.free_nats))
        return dataclasses.replace(shipped, out=str(Path(self.runs) / f"s{seed}"), steps=self.steps, seed=seed,
                                   level_kl_weights=weights, free_nats=free, amp=self.amp,
                                   device=self.device)  # fmt: skip
