"""`python -m mlvgm.train`: self-supervised training on Continuous Sampling (or a real image folder).

    python -m mlvgm.train                                  # the quickstart: shapes world, a few minutes on CPU
    python -m mlvgm.train --preset shapes-synth --epochs 5 # any preset, any field overridden
    python -m mlvgm.train --resume runs/quickstart-...     # continue exactly where a run stopped
    torchrun --nproc_per_node 4 -m mlvgm.train --preset .. # data parallel; every rank its own latents

Each step: latents from the (seed, rank, step) stream -> T_z -> g -> T_x -> encoder -> loss (SimCLR's
InfoNCE with negatives gathered across ranks, SimSiam's or BYOL's), SGD with lr = base_lr x batch / 256,
linear warm-up then cosine decay. A run folder holds config.json (with provenance), metrics.csv,
the checkpoint (safetensors + JSON, atomic) and, after evaluation, probes.csv.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kernels.dispatch import IMPLS
from mlvgm.augment import PRESETS as AUGMENTS
from mlvgm.augment import PixelAugment
from mlvgm.checkpoint import load_checkpoint, read_record, save_checkpoint
from mlvgm.config import coerce, parse_config
from mlvgm.encoders import ARCHS, BYOL, METHODS, SimCLR, SimSiam
from mlvgm.errors import InputError
from mlvgm.hostmem import retain_freed_memory
from mlvgm.io import atomic_path, atomic_write_json, atomic_write_text, check_output_dir
from mlvgm.provenance import provenance, provenance_line


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    # what learns
    method: str = _f("simclr", f"self-supervised method: {', '.join(METHODS)}")
    arch: str = _f("resnet18", f"backbone: {', '.join(ARCHS)}")
    small_stem: bool = _f(True, "3x3 stride-1 first conv, no max-pool (for 32-64 px images)")
    proj_hidden: int = _f(512, "projector hidden size (SimCLR, BYOL; BYOL's predictor too)")
    proj_dim: int = _f(128, "projector output size (SimCLR 128, SimSiam 2048, BYOL 256)")
    pred_hidden: int = _f(512, "SimSiam predictor bottleneck size")
    temperature: float = _f(0.1, "InfoNCE temperature (SimCLR)")
    byol_momentum: float = _f(0.996, "BYOL target EMA momentum at step 0 (cosine to 1)")
    # where batches come from
    source: str = _f("cs", "cs (Continuous Sampling from --generator) or imagefolder (--data)")
    generator: str = _f("shapes", "generator spec for Continuous Sampling")
    checkpoint: str = _f("", "generator checkpoint path, appended to the spec as NAME:PATH when set")
    data: str = _f("", "ImageFolder path for --source imagefolder")
    truncation: float = _f(2.0, "anchor truncation t (latents ~ N^t(0, 1, t))")
    views: str = _f("random", "T_z: none (synthetic pairs differ by T_x only), random, or learned (--walkers)")
    view_levels: tuple[str, ...] = _f(("2", "3", "4", "5"), "levels or groups T_z perturbs (1-based or names)")
    view_sigma: tuple[float, ...] = _f((1.0,), "sigma per level in view_levels (one value: all the same)")
    view_t: float = _f(2.0, "truncation of the T_z noise, in sigmas")
    walkers: str = _f("", "walkers for --views learned: the walkers.safetensors python -m mlvgm.quantify writes")
    view_sigma_max: tuple[float, ...] = _f(
        (),
        "multi-level option: per-sample sigma ~ U(view_sigma, this), one per level or one for all (empty: fixed sigma)",
    )
    view_p: float = _f(1.0, "multi-level option: probability that T_z perturbs a chosen level of a sample")
    augment: str = _f("no_color", f"T_x preset: {', '.join(AUGMENTS)}")
    crop: int = _f(0, "side of the augmented views in px (0: the images' own size)")
    epoch_images: int = _f(126_789, "images per Continuous-Sampling epoch (ImageNet-100's size)")
    # optimisation
    epochs: int = _f(100, "epochs")
    batch_size: int = _f(256, "global batch (pairs per step, all ranks together)")
    optimizer: str = _f("sgd", "sgd (momentum; the paper's Tables 2-3) or adam (the paper's Figure 5 runs)")
    base_lr: float = _f(0.05, "learning rate at batch 256: lr = base_lr x batch / 256")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(1e-4, "weight decay")
    warmup_epochs: int = _f(0, "linear warm-up epochs before the cosine decay")
    amp: str = _f("auto", "bf16 autocast: auto (CUDA, and CPUs with native bf16), on, off")
    compile_generator: bool = _f(False, "torch.compile the generator for Continuous Sampling")
    render_chunk: int = _f(
        0, "images per generator forward in Continuous Sampling (0: a step's anchors and positives in one); "
        "lower it when rendering runs out of memory"
    )  # fmt: skip
    kernels: str = _f(
        "auto", "InfoNCE and T_z kernels: auto (Triton on CUDA, compiled torch on CPU), torch, compiled, triton"
    )
    # the run
    seed: int = _f(0, "seed of every stream (latents, views, augmentations, shuffles) and of the init")
    out: str = _f("", "run folder (default: runs/<preset>-<time>)")
    results: str = _f("", "folder to copy the run's summary into (metrics, plots, probe table)")
    checkpoint_every: int = _f(0, "steps between checkpoints (0: every epoch); always at the end")
    log_every: int = _f(10, "steps between metrics.csv rows")
    workers: int = _f(2, "DataLoader workers (imagefolder)")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N (torchrun: cuda:LOCAL_RANK)")
    evaluate: bool = _f(True, "run linear-probe and kNN evaluation at the end")
    eval_train: int = _f(5000, "labelled images to fit probes on (generated: the shapes world's factors)")
    eval_test: int = _f(1000, "labelled images to test probes on")

    def __post_init__(self) -> None:
        choices = {"method": METHODS, "arch": ARCHS, "source": ("cs", "imagefolder"),
                   "views": ("none", "random", "learned"), "augment": AUGMENTS, "amp": ("auto", "on", "off"),
                   "optimizer": ("sgd", "adam"), "kernels": IMPLS}  # fmt: skip
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise InputError(f"{key} must be one of {', '.join(valid)}, got {getattr(self, key)!r}")
        positive = ("proj_hidden", "proj_dim", "pred_hidden", "epoch_images", "epochs", "batch_size", "log_every",
                    "eval_train", "eval_test")  # fmt: skip
        for key in positive:
            if getattr(self, key) <= 0:
                raise InputError(f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("temperature", "base_lr", "truncation", "view_t"):
            if not getattr(self, key) > 0:
                raise InputError(f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("warmup_epochs", "checkpoint_every", "crop", "workers", "weight_decay", "seed", "render_chunk"):
            if getattr(self, key) < 0:
                raise InputError(f"{key} must be >= 0, got {getattr(self, key)}")
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
_VIEWS = {
    # real images, and generated anchors with T_x only
    "real": {"source": "imagefolder", "views": "none", "augment": "simclr"},
    "synth": {"views": "none", "augment": "simclr"},
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
            presets[f"{gen}-{method}-real"] = {**head, **_VIEWS["real"]}
            presets[f"{gen}-{method}-synth"] = {**head, **_VIEWS["synth"]}
            presets[f"{gen}-{method}-random"] = {**head, "views": "random", "augment": "simclr", **jahanian}
            presets[f"{gen}-{method}-ml-random"] = {**head, "views": "random", "augment": "no_color", **multi}
            # learned: Li et al.'s single walker over every level (quantify --single true); ml-learned:
            # one walker per level, on the levels the ML random views perturb. Both take --walkers PATH.
            presets[f"{gen}-{method}-learned"] = {**head, "views": "learned", "augment": "simclr",
                                                  "view_levels": jahanian["view_levels"]}  # fmt: skip
            presets[f"{gen}-{method}-ml-learned"] = {**head, "views": "learned", "augment": "no_color",
                                                     "view_levels": multi["view_levels"]}  # fmt: skip
    return presets


PRESETS: dict[str, dict[str, object]] = {
    # The main job: a quick, meaningful run on the built-in world (see README for its numbers).
    "quickstart": {
        "generator": "shapes:resolution=32", "views": "random", "view_levels": ("2", "3", "4", "5"),
        "view_sigma": (1.0,), "augment": "none", "epochs": 4, "epoch_images": 3840, "batch_size": 64,
        "optimizer": "adam", "base_lr": 0.004, "temperature": 0.2, "results": "results/quickstart",
        "eval_train": 4000, "eval_test": 1000,
    },
    "shapes-synth": {"generator": "shapes", "views": "none", "augment": "simclr"},
    "shapes-random": {"generator": "shapes", "views": "random", "view_levels": ("1", "2", "3", "4", "5", "6"),
                      "view_sigma": (0.2,), "augment": "simclr"},
    "shapes-ml-random": {"generator": "shapes", "views": "random", "view_levels": ("2", "3", "4", "5"),
                         "view_sigma": (1.0,), "augment": "no_color"},
    **_paper_presets(),
}  # fmt: skip


# --- building blocks ---------------------------------------------------------------------------------


def generator_spec(config: TrainConfig) -> str:
    """The spec to load: `generator`, or `generator:checkpoint` when a checkpoint path is given."""
    if not config.checkpoint:
        if config.generator in ("bigbigan", "stylegan2"):
            raise InputError(
                f"the {config.generator} presets need the generator's weights: pass --checkpoint PATH "
                f"(BigBiGAN_x1.pth or an NVIDIA StyleGAN2 .pkl)"
            )
        return config.generator
    if not Path(config.checkpoint).is_file():
        raise InputError(f"checkpoint {config.checkpoint} does not exist: give the path of the generator's weights")
    return f"{config.generator}:{config.checkpoint}"


def check_inputs(config: TrainConfig) -> None:
    """The paths a config needs exist (presets leave them to the user)."""
    if config.source == "cs":
        generator_spec(config)
        if config.views == "learned" and not config.walkers:
            raise InputError("--views learned needs --walkers PATH: the walkers.safetensors python -m mlvgm.quantify "
                             "writes (--single true for the single-latent baseline)")  # fmt: skip
        if config.views == "learned" and not Path(config.walkers).with_suffix(".safetensors").exists():
            raise InputError(f"walkers file {config.walkers} does not exist: run python -m mlvgm.quantify --out DIR")
    elif not config.data:
        raise InputError("--source imagefolder needs --data PATH (an ImageFolder of class subfolders)")
    elif not Path(config.data).is_dir():
        raise InputError(f"image folder {config.data} does not exist: give the path of an ImageFolder")


def build_method(config: TrainConfig) -> nn.Module:
    common = {"small_stem": config.small_stem}
    if config.method == "simclr":
        return SimCLR(config.arch, proj_hidden=config.proj_hidden, proj_dim=config.proj_dim,
                      temperature=config.temperature, impl=config.kernels, **common)  # fmt: skip
    if config.method == "simsiam":
        return SimSiam(config.arch, proj_dim=config.proj_dim, pred_hidden=config.pred_hidden, **common)
    return BYOL(config.arch, proj_hidden=config.proj_hidden, proj_dim=config.proj_dim,
                base_momentum=config.byol_momentum, **common)  # fmt: skip


def build_views(config: TrainConfig, g):
    from mlvgm.views import LearnedViews, LevelNoise, NoViews, RandomViews

    if config.views == "none":
        return NoViews(g)
    if config.views == "learned":
        levels = [int(level) if level.isdigit() else level for level in config.view_levels]
        return LearnedViews(g, config.walkers, levels)

    def per_level(values: tuple) -> tuple:  # one value for all levels, or one per level (checked by the config)
        return values * len(config.view_levels) if len(values) == 1 else values

    sigmas = per_level(config.view_sigma)
    tops = per_level(config.view_sigma_max) if config.view_sigma_max else (None,) * len(sigmas)
    noise = {}
    for level, sigma, top in zip(config.view_levels, sigmas, tops, strict=True):
        noise[int(level) if level.isdigit() else level] = LevelNoise(
            sigma=sigma, t=config.view_t, sigma_max=top, p=config.view_p
        )
    return RandomViews(g, noise, impl=config.kernels)


def kernels_used(config: TrainConfig, device: torch.device) -> dict[str, str]:
    """Which implementation each fused op of this run runs (what impl="auto" resolves to), for provenance."""
    from kernels.dispatch import resolve_impl

    used = {}
    if config.method == "simclr":
        used["infonce"] = resolve_impl("infonce", config.kernels, device)
    if config.views == "random" and config.source == "cs":
        used["perturb"] = resolve_impl("perturb", config.kernels, device)
    return used


def build_source(config: TrainConfig, *, rank: int, world: int, device: torch.device):
    from mlvgm.data.sources import ImageFolderSource

    local_batch = config.batch_size // world
    if config.source == "imagefolder":
        if not config.data:
            raise InputError("--source imagefolder needs --data PATH (an ImageFolder of class subfolders)")
        resolution = config.crop or 64
        augment = PixelAugment(config.augment, config.crop or resolution).to(device)
        return ImageFolderSource(config.data, augment, local_batch, seed=config.seed, rank=rank, world_size=world,
                                 resolution=resolution, workers=config.workers, device=device)  # fmt: skip
    from mlvgm.generators import load_generator

    g = load_generator(generator_spec(config), device=device)
    return continuous_sampling(config, g, rank=rank, world=world, device=device)


def continuous_sampling(config: TrainConfig, g, *, rank: int, world: int, device: torch.device):
    """Continuous Sampling from generator g, already on `device`, with the config's T_z, T_x and batch."""
    from mlvgm.data.sources import ContinuousSampling, steps_for

    augment = PixelAugment(config.augment, config.crop or g.resolution).to(device)
    return ContinuousSampling(
        g, build_views(config, g), augment, config.batch_size // world, seed=config.seed, rank=rank,
        steps_per_epoch=steps_for(config.epoch_images, config.batch_size), truncation=config.truncation,
        compile=config.compile_generator, amp=device.type == "cuda" and use_amp(config, device),
        render_chunk=config.render_chunk or None,
    )  # fmt: skip


def build_optimizer(config: TrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    lr = peak_lr(config)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


def peak_lr(config: TrainConfig) -> float:
    return config.base_lr * config.batch_size / 256


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up to base_lr x batch / 256 over warmup_epochs, then cosine decay to 0."""
    peak, total = peak_lr(config), config.epochs * steps_per_epoch
    warm = config.warmup_epochs * steps_per_epoch
    if step < warm:
        return peak * (step + 1) / warm
    return peak * 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_amp(config: TrainConfig, device: torch.device) -> bool:
    if config.amp == "auto":
        return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
    return config.amp == "on"


@dataclass
class Distributed:
    rank: int
    world: int
    device: torch.device


def init_distributed(config: TrainConfig) -> Distributed:
    """torchrun sets RANK / WORLD_SIZE / LOCAL_RANK: gloo on CPU, nccl on CUDA; else one process."""
    from mlvgm.cli import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed(0, 1, resolve_device(config.device))
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if config.batch_size % world:
        raise InputError(f"batch_size {config.batch_size} is not divisible by the world size {world}")
    cuda = torch.cuda.is_available() and config.device != "cpu"
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Distributed(rank, world, device)


class MetricsLog:
    """metrics.csv, one row per log step (on resume, rows after the checkpoint are dropped first),
    and TensorBoard scalars in RUN/tensorboard when the tensorboard package is installed."""

    def __init__(self, path: Path, fields: list[str], *, start_step: int, enabled: bool) -> None:
        self.path, self.fields, self.enabled = path, fields, enabled
        self.board = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("tensorboard is not installed: metrics go to metrics.csv only (pip install tensorboard)")
        else:
            self.board = SummaryWriter(str(path.parent / "tensorboard"), purge_step=start_step + 1)
        rows = []
        if start_step > 0 and path.exists():
            with open(path, newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["step"]) <= start_step]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(row)
        if self.board is not None:
            for key in self.fields[2:]:
                if key in row:
                    self.board.add_scalar(key, row[key], global_step=row["step"])
            self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


# --- the loop ----------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    preset: str = "",
    stop_at: int | None = None,  # stop before this step, as if interrupted (tests, time limits)
    progress: bool | None = None,  # tqdm bar; None: on a terminal only
) -> dict:
    """Train in run_dir (created, or resumed from its checkpoint); returns the run's summary."""
    from tqdm import tqdm

    dist_info = init_distributed(config)
    rank, world, device = dist_info.rank, dist_info.world, dist_info.device
    run_dir = Path(run_dir)
    lead = rank == 0
    torch.manual_seed(config.seed)  # the initial weights
    method = build_method(config).to(device)
    if device.type == "cuda":
        method = method.to(memory_format=torch.channels_last)
    lr0 = peak_lr(config)
    optimizer = build_optimizer(config, method.param_groups(lr0))
    start_step = 0
    if resume:
        start_step = load_checkpoint(run_dir, method, optimizer)["step"]
    model = method
    if world > 1:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    source = build_source(config, rank=rank, world=world, device=device)
    steps_per_epoch = source.steps_per_epoch
    total = config.epochs * steps_per_epoch
    every = config.checkpoint_every or steps_per_epoch
    amp = use_amp(config, device)

    record = provenance(dataclasses.asdict(config))
    record.update(preset=preset, world_size=world, steps_per_epoch=steps_per_epoch, total_steps=total, amp=amp,
                  kernels=kernels_used(config, device),
                  host_memory_retained=device.type == "cpu" and retain_freed_memory())  # fmt: skip
    if lead:
        print(provenance_line(record))
        print(f"run {run_dir}: {config.method} {config.arch}, {total} steps of {config.batch_size} "
              f"({steps_per_epoch} per epoch), {'resuming at step ' + str(start_step) if resume else 'new'}, "
              f"bf16 {'on' if amp else 'off'}, {device}")  # fmt: skip
        atomic_write_json(run_dir / ("config.json" if not resume else "resume.json"), record)
    fields = ["step", "epoch", "loss", "lr", "images_per_s", "elapsed_s", *_metric_names(config)]
    log = MetricsLog(run_dir / "metrics.csv", fields, start_step=start_step, enabled=lead)

    batches = source.iterate(start_step)
    bar = tqdm(
        total=total,
        initial=start_step,
        unit="step",
        disable=not lead or (not progress if progress is not None else None),
    )
    method.train()
    started = last_time = time.perf_counter()
    last_step, trained = start_step, 0
    for step in range(start_step, total):
        if stop_at is not None and step >= stop_at:
            break
        lr = learning_rate(config, step, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr0 if group.get("fixed_lr") else lr
        view_a, view_b = next(batches)
        if device.type == "cuda":
            view_a, view_b = (v.contiguous(memory_format=torch.channels_last) for v in (view_a, view_b))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, metrics = model(view_a, view_b)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.after_step(step, total)
        trained += 1
        done = step + 1
        if done % config.log_every == 0 or done == total:
            now = time.perf_counter()
            speed = (done - last_step) * config.batch_size / (now - last_time)
            row = {"step": done, "epoch": round(done / steps_per_epoch, 4), "loss": float(loss.detach()), "lr": lr,
                   "images_per_s": round(speed, 2), "elapsed_s": round(now - started, 3),
                   **{k: float(v) for k, v in metrics.items()}}  # fmt: skip
            log.write(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.3g}", img_s=f"{speed:.0f}")
            last_step, last_time = done, now
        bar.update(1)
        if done % every == 0 or done == total:
            if lead:
                save_checkpoint(run_dir, method, optimizer, step=done, extra={"epoch": done / steps_per_epoch})
            _barrier(world)
    bar.close()
    log.close()
    batches.close()  # stops DataLoader workers now rather than at garbage collection
    elapsed = time.perf_counter() - started
    summary = {
        "run": str(run_dir), "steps": start_step + trained, "total_steps": total, "wall_s": round(elapsed, 2),
        "images_per_s": round(trained * config.batch_size / elapsed, 2) if trained else 0.0,
    }  # fmt: skip
    if lead and stop_at is None and config.evaluate:
        from mlvgm.evaluate import evaluate_method

        table = evaluate_method(config, method, device=device)
        atomic_write_text(run_dir / "probes.csv", table.to_csv(index=False))
        summary["probes"] = table.to_dict(orient="records")
    if lead:
        atomic_write_json(run_dir / "summary.json", {**summary, "provenance": record})
        # InfoNCE of an encoder that tells nothing apart: every one of the 2N - 1 others equally likely
        chance = math.log(2 * config.batch_size - 1) if config.method == "simclr" else None
        title = f"{preset or 'run'}: {config.method}, batch {config.batch_size}"
        _plot_loss(run_dir / "metrics.csv", run_dir / "loss.png", title=title, chance=chance)
    return summary


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _metric_names(config: TrainConfig) -> list[str]:
    return {"simclr": [], "simsiam": ["z_std"], "byol": ["momentum"]}[config.method]


def _plot_loss(metrics: Path, out: Path, *, title: str, chance: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from mlvgm.io import atomic_path

    table = pd.read_csv(metrics)
    if table.empty:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(table["step"], table["loss"], color="tab:blue", label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss", color="tab:blue")
    lr_axis = ax.twinx()
    lr_axis.plot(table["step"], table["lr"], color="tab:gray", linestyle="--", label="lr")
    lr_axis.set_ylabel("learning rate", color="tab:gray")
    if chance is not None:
        ax.axhline(chance, color="tab:red", linestyle=":", linewidth=1)
        ax.annotate("chance: log(2N - 1)", (table["step"].iloc[0], chance), fontsize=7, color="tab:red",
                    xytext=(0, -9), textcoords="offset points")  # fmt: skip
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# --- command line ------------------------------------------------------------------------------------


def load_run_config(run_dir: Path, **changes) -> tuple[TrainConfig, str]:
    """(the config a run was made with, with `changes` applied; its preset) from RUN/config.json."""
    import json

    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise InputError(f"{run_dir} is not a run folder (no config.json): give a folder python -m mlvgm.train wrote")
    saved = json.loads(path.read_text())
    return TrainConfig(**coerce(TrainConfig, {**saved["config"], **changes})), saved.get("preset", "")


def _resumed_config(run_dir: Path, overrides: dict, preset_given: str | None) -> tuple[TrainConfig, str]:
    config, preset = load_run_config(run_dir)
    read_record(run_dir)  # fails clearly when there is no checkpoint yet
    if preset_given is not None and preset_given != preset:
        raise InputError(f"{run_dir} was made with preset {preset!r}, not {preset_given!r}: drop --preset to resume")
    for key, value in overrides.items():
        if getattr(config, key) != value:
            raise InputError(
                f"{run_dir} was made with {key}={getattr(config, key)!r}, not {value!r}: "
                "resume with the same config or start a new run"
            )
    return config, preset


def main(argv: Sequence[str] | None = None) -> dict:
    def extra(parser):
        parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")

    config, overrides, args = parse_config(
        TrainConfig, PRESETS, argv, prog="python -m mlvgm.train", default_preset="quickstart", extra=extra,
        description="Self-supervised training of an encoder on views a generator makes on the fly "
        "(Continuous Sampling) or on an image folder, then linear-probe and kNN evaluation.",
    )  # fmt: skip
    preset = args.preset
    if getattr(args, "resume", None):
        run_dir = Path(args.resume)
        typed = list(argv) if argv is not None else sys.argv[1:]
        given = args.preset if any(a == "--preset" or a.startswith("--preset=") for a in typed) else None
        config, preset = _resumed_config(run_dir, overrides, given)
        lead = int(os.environ.get("RANK", "0")) == 0
        return _finish(train(config, run_dir, resume=True, preset=preset), config, lead=lead)
    return _new_run(config, preset)


def _new_run(config: TrainConfig, preset: str) -> dict:
    lead = int(os.environ.get("RANK", "0")) == 0
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not config.out:
        raise InputError("with torchrun, pass --out RUN_DIR so that every rank writes to the same run folder")
    run_dir = Path(config.out) if config.out else Path("runs") / f"{preset}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    check_inputs(config)  # a missing checkpoint or image folder fails before anything is written
    if lead:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise InputError(
                f"{run_dir} already holds a run: --resume {run_dir} to continue it, or choose another --out"
            )
        for folder, flag in ((run_dir, "--out"), (Path(config.results) if config.results else None, "--results")):
            if folder is None:
                continue
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(
                    f"cannot create {flag} folder {folder} ({exc.strerror}): choose another {flag}"
                ) from None
            check_output_dir(folder, flag=flag)
    return _finish(train(config, run_dir, preset=preset), config, lead=lead)


def _finish(summary: dict, config: TrainConfig, *, lead: bool = True) -> dict:
    """Print the outcome and copy the run's summary files into config.results (rank 0 only)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    if not lead:
        return summary
    run_dir = Path(summary["run"])
    print(f"trained {summary['steps']} steps in {summary['wall_s']:.0f} s ({summary['images_per_s']:.0f} images/s)")
    if "probes" in summary:
        import pandas as pd

        from mlvgm.evaluate import probes_markdown

        table = pd.DataFrame(summary["probes"])
        print(probes_markdown(table))
        atomic_write_text(run_dir / "probes.md", probes_markdown(table) + "\n")
    if config.results:
        out = Path(config.results)
        for name in ("metrics.csv", "loss.png", "probes.csv", "probes.md", "summary.json"):
            if (run_dir / name).exists() and (run_dir / name).resolve() != (out / name).resolve():
                with atomic_path(out / name) as tmp:
                    shutil.copyfile(run_dir / name, tmp)
        print(f"summary copied to {out}/")
    return summary


if __name__ == "__main__":
    from mlvgm.cli import run

    sys.exit(run(main, "python -m mlvgm.train"))
