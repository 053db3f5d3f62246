"""The recipe: a training config turned into the objects a run is made of. It reads what the config names (the
generator's weights, an image folder, walkers) and writes nothing.

    config = make_config(TrainConfig, PRESETS, "quickstart", {"epochs": 2})
    method = build_method(config)                      # encoder + heads + loss (the --method plug-in)
    source = build_source(config, rank=0, world=1, device=device)   # Continuous Sampling or a loader
    optimizer = build_optimizer(config, method.param_groups(peak_lr(config)))
    lr = learning_rate(config, step, steps_per_epoch, total_steps)
    source.path                                        # how Continuous Sampling makes its batches, and why

`TrainConfig` and its `PRESETS` live in mlvgm.train_config (no torch, so a bad argument fails fast). The
training loop (mlvgm.train), evaluation (mlvgm.evaluate) and the benchmarks build their objects here, so
a run, its evaluation and a benchmark of the same config are the same network on the same data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from mlvgm.augment import PixelAugment
from mlvgm.data.sources import ContinuousSampling, ImageFolderSource, folder_resolution, steps_for
from mlvgm.errors import InputError
from mlvgm.generators import generator_spec, load_generator
from mlvgm.kernels.dispatch import resolve_impl
from mlvgm.plugins import method, view_strategy
from mlvgm.schedule import warmup_cosine
from mlvgm.train_config import TrainConfig, check_inputs
from mlvgm.train_step import use_bf16

_log = logging.getLogger("mlvgm.train")

# --- building blocks ---------------------------------------------------------------------------------


def spec(config: TrainConfig) -> str:
    """The generator spec of a Continuous-Sampling config (its checkpoint appended when set)."""
    return generator_spec(config.generator, config.checkpoint)


def build_method(config: TrainConfig) -> nn.Module:
    """The encoder with its method's heads and loss (the --method plug-in), at its initial weights (seed first)."""
    return method(config.method).build(config)


def initial_backbone(config: TrainConfig, device: torch.device | str = "cpu") -> nn.Module:
    """The backbone a run of this config starts from (the "random init" row of every probe table)."""
    torch.manual_seed(config.seed)
    return build_method(config).to(device).backbone


def metric_names(config: TrainConfig) -> list[str]:
    """The method's own metrics beside the loss (SimSiam's collapse monitor, BYOL's momentum)."""
    return list(method(config.method).metrics)


def build_views(config: TrainConfig, g):
    """T_z of the config (the --views plug-in) for generator g."""
    return view_strategy(config.views).build(config, g)


def kernels_used(config: TrainConfig, device: torch.device, *, cs_compiled: bool = False) -> dict[str, str]:
    """Which implementation each fused op of this run runs (what impl="auto" resolves to), for provenance. T_z's
    perturbation inside the compiled Continuous-Sampling step is traced into that graph whatever --kernels
    asked for ("traced": inductor generates its code); an explicit --kernels triton there says so in one line."""
    used = {op: resolve_impl(op, config.kernels, device) for op in method(config.method).kernels}
    if config.source == "cs":
        used |= {op: resolve_impl(op, config.kernels, device) for op in view_strategy(config.views).kernels}
    if "perturb" in used and cs_compiled and used["perturb"] != "torch":
        if config.kernels == "triton":
            _log.warning(
                "--kernels triton: T_z's perturbation runs traced inside the compiled Continuous-"
                "Sampling step (inductor's code, not the Triton kernel); --cs_compile off runs the kernel"
            )
        used["perturb"] = "traced"
    return used


def build_source(config: TrainConfig, *, rank: int, world: int, device: torch.device):
    """The config's data source on `device`: Continuous Sampling from its generator, or its image folder."""
    check_inputs(config)  # the same one-line errors for a missing folder, checkpoint or walkers file
    local_batch = config.batch_size // world
    if config.source == "imagefolder":
        resolution = config.crop or folder_resolution(config.data)
        augment = PixelAugment(config.augment, resolution).to(device)
        return ImageFolderSource(config.data, augment, local_batch, seed=config.seed, rank=rank, world_size=world,
                                 resolution=resolution, workers=config.workers, device=device)  # fmt: skip
    g = load_generator(spec(config), device=device)
    return continuous_sampling(config, g, rank=rank, world=world, device=device)


def continuous_sampling(config: TrainConfig, g, *, rank: int, world: int, device: torch.device):
    """Continuous Sampling from generator g, already on `device`, with the config's T_z, T_x, batch and path
    (`cs_path`): what `python -m mlvgm.train` trains on and the benchmarks time."""
    augment = PixelAugment(config.augment, config.crop or g.resolution).to(device)
    path = cs_path(config, device, g.resolution)
    source = ContinuousSampling(
        g, build_views(config, g), augment, config.batch_size // world, seed=config.seed, rank=rank,
        steps_per_epoch=steps_for(config.epoch_images, config.batch_size), truncation=config.truncation,
        compile=path.compile, amp=device.type == "cuda" and use_amp(config, device),
        render_chunk=config.render_chunk or None, cuda_graphs=path.cuda_graph, overlap=path.overlap,
    )  # fmt: skip
    source.path = path  # what the run and the benchmarks record
    return source


# --- the Continuous-Sampling path --------------------------------------------------------------------

# On a CPU, `--cs_compile auto` compiles the step when the run renders at least this many pixels in all (planned
# steps x pairs per step x resolution^2): what the slowest-to-repay of the presets bench.cs_compile_cost measured
# needs to repay a first run's compile (the quickstart at 32 px: 38 s of compiling, 5.3 ms saved a step, repaid
# after 7,184 steps = 471M; the 64-px presets at batch 256 after 265-271 steps = 278-284M), rounded up. A run
# whose cache already holds the compiled step repays it within about 120 steps (results/bench/cs-compile).
CPU_COMPILE_MIN_PIXELS = 500_000_000


@dataclass(frozen=True)
class CSPath:
    """How a run's Continuous-Sampling batches are made, and why (recorded with the run and its benchmarks)."""

    compile: bool  # the step compiled as one graph (else `produce` called eagerly)
    cuda_graph: bool  # the compiled step replayed from a CUDA graph
    overlap: bool  # step s + 1 made on a side stream while the trainer uses step s (CUDA)
    why: str

    @property
    def mode(self) -> str:
        """What ContinuousSampling.mode reports when nothing falls back: "graph", "compiled" or "eager"."""
        return "graph" if self.cuda_graph else "compiled" if self.compile else "eager"

    def line(self) -> str:
        extra = ", overlapped" if self.overlap else ""
        return f"Continuous Sampling: {self.mode}{extra} ({self.why})"


def planned_steps(config: TrainConfig) -> int:
    """Steps a Continuous-Sampling run of this config plans (a time budget may train fewer)."""
    return config.epochs * steps_for(config.epoch_images, config.batch_size)


def planned_pixels(config: TrainConfig, resolution: int) -> int:
    """Pixels per side squared, times the pairs the run plans to render: the work the compile is repaid over."""
    return planned_steps(config) * config.batch_size * resolution**2


def cs_path(config: TrainConfig, device: torch.device | str, resolution: int) -> CSPath:
    """The path `--cs_compile` selects on `device` for a generator of `resolution` px. auto: compiled where it pays,
    which on CUDA is always (and captured into a CUDA graph), on a CPU when the planned pixels reach
    CPU_COMPILE_MIN_PIXELS."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    overlap = config.overlap and cuda
    if config.cs_compile != "auto":
        on = config.cs_compile == "on"
        return CSPath(on, on and cuda, overlap, f"--cs_compile {config.cs_compile}")
    if cuda:
        return CSPath(True, True, overlap, "auto: on CUDA one captured graph a step")
    pixels, steps = planned_pixels(config, resolution), planned_steps(config)
    work = f"{steps:,} planned steps of {config.batch_size} pairs at {resolution} px"
    if pixels >= CPU_COMPILE_MIN_PIXELS:
        return CSPath(True, False, overlap, f"auto: {work} repay the compile on a CPU")
    return CSPath(False, False, overlap, f"auto: {work} would not repay the compile on a CPU (--cs_compile on "
                                         "pays where the compile cache already holds it)")  # fmt: skip


# --- the training step's objects ---------------------------------------------------------------------


def check_cuda_graphs(config: TrainConfig, device: torch.device) -> None:
    if config.cuda_graphs == "on" and device.type != "cuda":
        raise InputError(f"--cuda_graphs on needs a CUDA device, not {device}: use --cuda_graphs off")


def step_forward(model: nn.Module, config: TrainConfig, device: torch.device):
    """What the training step calls for (loss, metrics): the model, or with --cuda_graphs on the model compiled
    with CUDA graphs (mode "reduce-overhead": its forward and its backward each replayed as one graph; the
    optimiser's step and BYOL's target update stay eager)."""
    check_cuda_graphs(config, device)
    if config.cuda_graphs != "on":
        return model
    return torch.compile(model, mode="reduce-overhead", dynamic=False)


def build_optimizer(config: TrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    lr = peak_lr(config)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


def peak_lr(config: TrainConfig) -> float:
    return config.base_lr * config.batch_size / 256


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int, total_steps: int | None = None) -> float:
    """Linear warm-up to base_lr x batch / 256 over warmup_epochs, then cosine decay to 0 at total_steps
    (default: epochs x steps_per_epoch; fewer when a time budget cut the run short)."""
    total = total_steps if total_steps is not None else config.epochs * steps_per_epoch
    return warmup_cosine(step, peak=peak_lr(config), warmup=config.warmup_epochs * steps_per_epoch, total=total)


def use_amp(config: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast for this config on `device` (mlvgm.train_step.use_bf16's rule)."""
    return use_bf16(config.amp, device)
