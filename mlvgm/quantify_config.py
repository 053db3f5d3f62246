"""The config of `python -m mlvgm.quantify` and `mlvgm.quantify(g)` and its presets, without torch: the command
checks its arguments with these before it imports the implementation (mlvgm.quantification), which imports them
from here, not from the command.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlvgm.config import check_ranges, device_option, option
from mlvgm.errors import InputError

CRITICS = ("resnet18", "resnet50", "tiny")


@dataclass(frozen=True)
class QuantifyConfig:
    generator: str = option("shapes", "generator spec")
    checkpoint: str = option("", "generator checkpoint path, appended to the spec as NAME:PATH when set")
    levels: tuple[str, ...] = option((), "units to quantify: levels or groups (1-based or names); empty = every level")
    gamma: float = option(1.0, "target InfoNCE: a unit stops when its smoothed InfoNCE reaches it")
    batch_size: int = option(64, "anchors per step (the paper's 64 per GPU)")
    min_samples: int = option(20_000, "samples a unit trains before it may stop at gamma")
    max_samples: int = option(200_000, "budget per unit: a unit not at gamma by then is flagged")
    lr_walk: float = option(8e-5, "walker learning rate (Adam)")
    lr_critic: float = option(5e-5, "critic learning rate (Adam)")
    beta1: float = option(0.5, "Adam beta1 of both (the paper's code: 0.5)")
    temperature: float = option(0.1, "InfoNCE temperature")
    truncation: float = option(2.0, "anchors ~ N^t(0, 1, t)")
    smoothing: float = option(0.98, "EMA factor of the InfoNCE that the stopping rule reads")
    critic: str = option("resnet18", f"critic backbone: {', '.join(CRITICS)} (small stem)")
    proj_hidden: int = option(512, "critic head hidden size (the paper: 512 -> 512 -> 128)")
    proj_dim: int = option(128, "critic head output size")
    hidden: int = option(0, "walker MLP hidden size (0: the unit's dimension, as COP-Gen)")
    single: bool = option(False, "one walker over all levels at once (the single-latent baseline)")
    joint: bool = option(True, "train every unit in one run on shared anchors and images (else one after another)")
    mc_samples: int = option(100_000, "Monte Carlo latents for mu and sigma")
    mc_batch: int = option(1024, "Monte Carlo batch")
    log_every: int = option(10, "steps between rows of the dynamics")
    kernels: str = option("auto", "InfoNCE kernel: auto, torch, compiled, triton")
    device: str = device_option()
    seed: int = option(0, "seed of anchors, walkers, critics and the Monte Carlo")
    audit_pairs: int = option(2048, "anchor/positive pairs per sigma of the audit that sets views.json's sigmas")
    out: str = option("", "folder for table1.csv/.md, dynamics.csv/.png, walkers and views.json (CLI)")

    def __post_init__(self) -> None:
        if not self.gamma > 0:
            raise InputError(f"gamma must be > 0, got {self.gamma}: the paper uses about 1")
        check_ranges(self, positive=("batch_size", "min_samples", "max_samples", "mc_samples", "mc_batch", "log_every",
                                     "proj_dim", "proj_hidden", "audit_pairs"))  # fmt: skip
        if self.batch_size < 2:
            raise InputError("batch_size must be >= 2: InfoNCE needs negatives")
        if self.min_samples > self.max_samples:
            raise InputError(f"min_samples ({self.min_samples}) must not exceed max_samples ({self.max_samples})")
        check_ranges(self, positive=("lr_walk", "lr_critic", "temperature", "truncation"))
        if not 0 <= self.beta1 < 1 or not 0 <= self.smoothing < 1:
            raise InputError("beta1 and smoothing must be in [0, 1)")
        if self.critic not in CRITICS:
            raise InputError(f"critic must be one of {', '.join(CRITICS)}, got {self.critic!r}")
        check_ranges(self, nonnegative=("hidden",))
        if self.single and self.levels:
            raise InputError("single=True quantifies all levels as one: leave levels empty")


PRESETS: dict[str, dict[str, object]] = {
    # The paper's settings (its public code's defaults): ResNet-18 critic, Adam (0.5, 0.999), lr 8e-5/5e-5.
    "paper": {},
    # The shapes world at 32 px with a small critic and larger steps: minutes on a CPU, not Table 1's protocol.
    "shapes-quick": {"generator": "shapes:resolution=32", "critic": "tiny", "lr_walk": 3e-3, "lr_critic": 1e-3,
                     "min_samples": 64 * 100, "max_samples": 64 * 4000, "mc_samples": 20_000},
    # The same with twice the budget, so that the weak levels z4 and z5 get to gamma: results/quantify/shapes.
    "shapes": {"generator": "shapes:resolution=32", "critic": "tiny", "lr_walk": 3e-3, "lr_critic": 1e-3,
               "min_samples": 64 * 100, "max_samples": 64 * 8000},
}  # fmt: skip


def table1_fields(max_samples: int, seed: int, *, single: bool = False) -> dict[str, object]:
    """The quantification settings of the miniature's Table 1 (the shapes-quick preset at a budget, 20,000 Monte
    Carlo samples): python -m mlvgm.experiments and the embedded VAE's positive control both use them."""
    fields = {**PRESETS["shapes-quick"], "max_samples": max_samples, "seed": seed, "single": single,
              "mc_samples": 20_000}  # fmt: skip
    fields["min_samples"] = min(int(fields["min_samples"]), max_samples)
    return fields
