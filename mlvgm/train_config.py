"""The config of `python -m mlvgm.train` and its presets, without torch (so arguments are checked first).

`TrainConfig` is the one frozen config of a training run; `PRESETS` holds the quickstart and the paper's
configurations (Tables 2-3, Appendix D); `check_inputs` checks the paths a config names before any work.
mlvgm.recipe turns a config into the objects a run is made of.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlvgm.config import AMP_MODES, amp_option, check_choices, check_ranges, device_option, option
from mlvgm.errors import InputError
from mlvgm.options import (
    ARCHS,
    AUGMENTS,
    KERNEL_IMPLS,
    PROBE_VAL_SHARE,
    PROBE_WEIGHT_DECAYS,
    check_probe_options,
    generator_spec,
)
from mlvgm.plugins import method_names, strategy_names, view_strategy

DEFAULT_PRESET = "quickstart"


@dataclass(frozen=True)
class TrainConfig:
    # what learns
    method: str = option("simclr", f"self-supervised method: {', '.join(method_names())} (mlvgm.plugins)")
    arch: str = option("resnet18", f"backbone: {', '.join(ARCHS)}")
    small_stem: bool = option(True, "3x3 stride-1 first conv, no max-pool (for 32-64 px images)")
    width: int = option(64, "backbone width: channels of its first stage (torchvision's 64; 32 is ~4x cheaper)")
    proj_hidden: int = option(512, "projector hidden size (SimCLR, BYOL; BYOL's predictor too)")
    proj_dim: int = option(128, "projector output size (SimCLR 128, SimSiam 2048, BYOL 256)")
    pred_hidden: int = option(512, "SimSiam predictor bottleneck size")
    temperature: float = option(0.1, "InfoNCE temperature (SimCLR)")
    byol_momentum: float = option(0.996, "BYOL target EMA momentum at step 0 (cosine to 1)")
    # where batches come from
    source: str = option("cs", "cs (Continuous Sampling from --generator) or imagefolder (--data)")
    generator: str = option("shapes", "generator spec for Continuous Sampling")
    checkpoint: str = option("", "generator checkpoint path, appended to the spec as NAME:PATH when set")
    data: str = option("", "ImageFolder path for --source imagefolder")
    truncation: float = option(2.0, "anchor truncation t (latents ~ N^t(0, 1, t))")
    views: str = option("random", "T_z: none (synthetic pairs differ by T_x only), random, learned (--walkers), or a "
                        "view strategy registered with mlvgm.plugins")  # fmt: skip
    view_levels: tuple[str, ...] = option(("2", "3", "4", "5"), "levels or groups T_z perturbs (1-based or names)")
    view_sigma: tuple[float, ...] = option((1.0,), "sigma per level in view_levels (one value: all the same)")
    view_t: float = option(2.0, "truncation of the T_z noise, in sigmas")
    walkers: str = option("", "walkers for --views learned: the walkers.safetensors python -m mlvgm.quantify writes")
    view_sigma_max: tuple[float, ...] = option(
        (),
        "multi-level option: per-sample sigma ~ U(view_sigma, this), one per level or one for all (empty: fixed sigma)",
    )
    view_p: float = option(1.0, "multi-level option: probability that T_z perturbs a chosen level of a sample")
    augment: str = option("no_color", f"T_x preset: {', '.join(AUGMENTS)}")
    crop: int = option(0, "side of the augmented views in px (0: the images' own size)")
    epoch_images: int = option(126_789, "images per Continuous-Sampling epoch (ImageNet-100's size)")
    # optimisation
    epochs: int = option(100, "epochs")
    batch_size: int = option(256, "global batch (pairs per step, all ranks together)")
    optimizer: str = option("sgd", "sgd (momentum; the paper's Tables 2-3) or adam (the paper's Figure 5 runs)")
    base_lr: float = option(0.05, "learning rate at batch 256: lr = base_lr x batch / 256")
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(1e-4, "weight decay")
    warmup_epochs: int = option(0, "linear warm-up epochs before the cosine decay")
    amp: str = amp_option()
    cs_compile: str = option(
        "auto", "the Continuous-Sampling step (draws, T_z, generator, T_x) compiled as one graph: auto (on CUDA, "
        "where it is also replayed from a CUDA graph; on a CPU when the run's steps repay the compile: "
        "docs/data-sources.md), on, off (eager)"
    )  # fmt: skip
    cuda_graphs: str = option(
        "off", "the training step's forward and backward compiled with CUDA graphs: on (CUDA only) or off"
    )
    overlap: bool = option(True, "on CUDA, make the next Continuous-Sampling batch on a side stream during the step")
    render_chunk: int = option(
        0, "images per generator forward in Continuous Sampling (0: a step's anchors and positives in one); "
        "lower it when rendering runs out of memory"
    )  # fmt: skip
    kernels: str = option(
        "auto", "InfoNCE and T_z kernels: auto (Triton on CUDA, compiled torch on CPU), torch, compiled, triton"
    )
    # the run
    seed: int = option(0, "seed of every stream (latents, views, augmentations, shuffles) and of the init")
    out: str = option("", "run folder (default: runs/<preset>-<time>)")
    results: str = option("", "folder to copy the run's summary into (metrics, plots, probe table)")
    checkpoint_every: int = option(0, "steps between checkpoints (0: every epoch); always at the end")
    checkpoint_minutes: float = option(10.0, "also checkpoint when this many minutes passed since the last (0: off)")
    budget_minutes: float = option(
        0.0, "time budget of the run, evaluation included: when the first steps show that the planned steps "
        "would not fit, train fewer (the schedule ends at the last step; recorded in the run). 0: no budget"
    )  # fmt: skip
    log_every: int = option(10, "steps between metrics.csv rows")
    workers: int = option(2, "DataLoader workers (imagefolder)")
    device: str = device_option("torchrun: cuda:LOCAL_RANK")
    evaluate: bool = option(True, "run linear-probe and kNN evaluation at the end")
    eval_train: int = option(5000, "labelled images to fit probes on (generated: the shapes world's factors)")
    eval_test: int = option(1000, "labelled images to test probes on")
    probe_weight_decays: tuple[float, ...] = option(
        PROBE_WEIGHT_DECAYS, "the linear probe's weight decays, one chosen on a validation split of the probe set"
    )
    probe_val_share: float = option(PROBE_VAL_SHARE, "share of the probe's train images that chooses its weight decay")

    def __post_init__(self) -> None:
        choices = {"method": method_names(), "arch": ARCHS, "source": ("cs", "imagefolder"),
                   "views": strategy_names(), "augment": AUGMENTS, "amp": AMP_MODES,
                   "optimizer": ("sgd", "adam"), "kernels": KERNEL_IMPLS,
                   "cuda_graphs": ("on", "off"), "cs_compile": ("auto", "on", "off")}  # fmt: skip
        check_choices(self, choices)
        check_ranges(self, positive=("proj_hidden", "proj_dim", "pred_hidden", "epoch_images", "epochs", "batch_size",
                                     "log_every", "eval_train", "eval_test", "temperature", "base_lr", "truncation",
                                     "view_t"),
                     nonnegative=("warmup_epochs", "checkpoint_every", "crop", "workers", "weight_decay", "seed",
                                  "render_chunk", "checkpoint_minutes", "budget_minutes"))  # fmt: skip
        check_probe_options(self.probe_weight_decays, self.probe_val_share)
        if isinstance(self.width, bool) or not 8 <= self.width <= 256:
            raise InputError(f"width must be an integer from 8 to 256 (torchvision's is 64), got {self.width}")
        if not 0 <= self.byol_momentum < 1:
            raise InputError(f"byol_momentum must be in [0, 1), got {self.byol_momentum}")
        if any(not s >= 0 for s in self.view_sigma) or not self.view_sigma:
            raise InputError(f"view_sigma must be one or more values >= 0, got {self.view_sigma}")
        if len(self.view_sigma) not in (1, len(self.view_levels)):
            raise InputError(
                f"view_sigma has {len(self.view_sigma)} values for {len(self.view_levels)} view_levels: "
                "give one, or one per level"
            )
        if len(self.view_sigma_max) not in (0, 1, len(self.view_levels)):
            raise InputError(
                f"view_sigma_max has {len(self.view_sigma_max)} values for {len(self.view_levels)} view_levels: "
                "give none (fixed sigma), one, or one per level"
            )
        if not 0 <= self.view_p <= 1:
            raise InputError(f"view_p must be in [0, 1], got {self.view_p}")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise InputError(f"warmup_epochs ({self.warmup_epochs}) must be fewer than epochs ({self.epochs})")


# --- presets: the quickstart and the paper's configurations (Tables 2-3, Appendix D) -------------------


_PAPER = {"epochs": 100, "base_lr": 0.05, "arch": "resnet50", "small_stem": False, "crop": 112}
_BIGBIGAN = {**_PAPER, "generator": "bigbigan", "batch_size": 1024, "warmup_epochs": 10, "truncation": 2.0}
_STYLEGAN = {**_PAPER, "generator": "stylegan2", "batch_size": 512, "warmup_epochs": 0, "truncation": 0.9}
_W16 = tuple(str(i) for i in range(1, 17))  # StyleGAN2's 16 w vectors; the paper groups them 4 x 4
# The paper's Table-2 rows: each row's data, T_z and T_x. The levels and sigmas of random and learned views are the
# generator's (the presets below, the experiments' quantification), so they are not part of the row.
TABLE2_ROWS: dict[str, dict[str, object]] = {
    "real": {"source": "imagefolder", "views": "none", "augment": "simclr"},  # real images
    "synth": {"views": "none", "augment": "simclr"},  # generated anchors with T_x only
    "random": {"views": "random", "augment": "simclr"},  # Jahanian et al.: one sigma on every level
    "learned": {"views": "learned", "augment": "simclr"},  # Li et al.: one walker over every level
    "ml-random": {"views": "random", "augment": "no_color"},  # the paper's multi-level views
    "ml-learned": {"views": "learned", "augment": "no_color"},
}
_HEADS = {
    "simclr": {"method": "simclr", "proj_hidden": 2048, "proj_dim": 128},
    "simsiam": {"method": "simsiam", "proj_dim": 2048, "pred_hidden": 512},
    "byol": {"method": "byol", "proj_hidden": 4096, "proj_dim": 256},
}


def _paper_presets() -> dict[str, dict[str, object]]:
    presets = {}
    for gen, base, methods, jahanian, multi in (
        ("bigbigan", _BIGBIGAN, ("simclr", "simsiam"),
         {"view_levels": ("1", "2", "3", "4", "5", "6"), "view_sigma": (0.2,), "view_t": 2.0},
         {"view_levels": ("2", "3", "4", "5", "6"), "view_sigma": (1.0,), "view_t": 2.0}),
        ("stylegan2", _STYLEGAN, ("byol", "simsiam"),
         {"view_levels": _W16, "view_sigma": (0.25,), "view_t": 0.9},
         {"view_levels": _W16, "view_sigma": (0.2,) * 4 + (0.1,) * 4 + (0.8,) * 8, "view_t": 1.0}),
    ):  # fmt: skip
        for method in methods:
            head = {**base, **_HEADS[method]}
            # learned: Li et al.'s single walker over every level (quantify --single true); ml-learned: one walker
            # per level, on the levels the ML random views perturb. Both take --walkers PATH.
            levels = {"real": {}, "synth": {}, "random": jahanian, "ml-random": multi,
                      "learned": {"view_levels": jahanian["view_levels"]},
                      "ml-learned": {"view_levels": multi["view_levels"]}}  # fmt: skip
            for row, row_fields in TABLE2_ROWS.items():
                presets[f"{gen}-{method}-{row}"] = {**head, **row_fields, **levels[row]}
    return presets


PRESETS: dict[str, dict[str, object]] = {
    # The main job: a meaningful run on the built-in world that fits in minutes on any 2-core CPU (a ResNet-18
    # of half width; the budget trains fewer steps where even that would not fit). Numbers: results/quickstart.
    "quickstart": {
        "generator": "shapes:resolution=32", "views": "random", "view_levels": ("2", "3", "4", "5"),
        "view_sigma": (1.0,), "augment": "none", "epochs": 4, "epoch_images": 3840, "batch_size": 64,
        "optimizer": "adam", "base_lr": 0.004, "temperature": 0.2, "width": 32, "budget_minutes": 8.0,
        "eval_train": 4000, "eval_test": 1000,
    },
    "shapes-synth": {"generator": "shapes", "views": "none", "augment": "simclr"},
    "shapes-random": {"generator": "shapes", "views": "random", "view_levels": ("1", "2", "3", "4", "5", "6"),
                      "view_sigma": (0.2,), "augment": "simclr"},
    "shapes-ml-random": {"generator": "shapes", "views": "random", "view_levels": ("2", "3", "4", "5"),
                         "view_sigma": (1.0,), "augment": "no_color"},
    **_paper_presets(),
}  # fmt: skip


def check_inputs(config: TrainConfig) -> None:
    """The paths a config needs exist (presets leave them to the user); cheap, so it runs before any work."""
    if config.source == "cs":
        generator_spec(config.generator, config.checkpoint)
        if config.views != "none" and (check := view_strategy(config.views).check) is not None:
            check(config)  # e.g. learned views' walkers file
    elif not config.data:
        raise InputError("--source imagefolder needs --data PATH (an ImageFolder of class subfolders)")
    elif not Path(config.data).is_dir():
        raise InputError(f"image folder {config.data} does not exist: give the path of an ImageFolder")
