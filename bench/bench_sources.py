"""Head-to-head: Continuous Sampling against the PyTorch DataLoader, DALI and FFCV (the paper's Figure 5).

    pytest bench/bench_sources.py --benchmark-json out.json          # every batch size (32, 64, 128, 256)
    pytest bench/bench_sources.py -m ci --benchmark-json out.json    # the CI subset: batch 32 only
    MLVGM_BENCH_BATCHES=256 MLVGM_BENCH_WORKERS=8 pytest bench/bench_sources.py ...  # one batch, 8 workers
    MLVGM_BENCH_SOURCES=cs,ffcv pytest bench/bench_sources.py ...                     # some sources
    python -m bench.figure5 out.json --out runs/bench                 # sources.csv, sources.md, figure5.png
    python -m bench.compare out.json --baseline results/bench/baseline-ci.json

All sources deliver the same thing: two views of 64-px images of the shapes world (`cs-bigbigan`: of its
128-px images), made by the same T_x preset (`no_color`: random resized crop + flip, normalised) at the
same view size, on the trainer's device. The real-data sources read the same 2,048 JPEGs, exported once
per session by `mlvgm.data.export` (and written into an FFCV .beton by `mlvgm.data.ffcv.write_beton`),
with 2 workers each.

- `sources-batch{B}`: images/s the source delivers, N consecutive batches of one iterator per round,
  after warm-up batches (worker start-up, torch.compile, numba) that are not timed. Members: `cs` (the
  source `mlvgm.train --preset shapes-ml-random` builds, on the path its `--cs_compile auto` picks, named in
  extra_info `cs_path` and `cs_mode`), `cs-bigbigan` (the same
  CS over the paper's Figure-5 generator: BigBiGAN's full architecture at 128 px with random weights,
  compiled, its ML-random views on chunks 2-6, views cropped to the same size), `cs-stylegan2` (GPU only:
  StyleGAN2 at 256 px, random weights, bf16, the paper's ML random views on its w's), `cs-paper` (the
  paper's code path: scipy latents on the CPU, eager generator moved to the device and back every
  step; a no-op move on a CPU machine), `imagefolder` (torch DataLoader), `dali`, `ffcv`.
- `epoch-time-batch{B}`: one SimCLR step (`mlvgm.train_step.TrainStep`, the step mlvgm.train takes, on the
  small-stem ResNet-18 `mlvgm.recipe.build_method` builds, Adam as in the paper's Figure-5 runs, 32-px
  views) fed by each source, against `resident`: the same
  step on one batch already on the device, the limit no source can beat. Each member's extra_info
  holds the time per step and the energy and CO2 of its timed steps (codecarbon's offline tracker,
  `bench/carbon.py`), extrapolated to an epoch of ImageNet-100's 126,789 images as the paper's were.

The figures to quote are ratios within one run: CS against each loader at equal batch, and each
source's step time against the resident limit (target for CS: at most 1.10x). On a 2-core CPU every
source competes with the training step for the same cores, so the distance to the limit there measures
the CPU cost of the data path, not overlap; on a GPU it measures how much of the step the data hides.
Threads: $OMP_NUM_THREADS when set, else every core this process may use; recorded in extra_info.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from bench.carbon import EnergyMeter
from mlvgm.augment import PixelAugment
from mlvgm.config import make_config
from mlvgm.data.sources import ContinuousSampling, ImageFolderSource, steps_for, view_streams
from mlvgm.hostmem import retain_freed_memory
from mlvgm.recipe import (
    build_method,
    build_optimizer,
    build_source,
    build_views,
    continuous_sampling,
    peak_lr,
    use_amp,
)
from mlvgm.train_config import PRESETS, TrainConfig
from mlvgm.train_step import TrainStep, channels_last

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SEED = 0
N_IMAGES = 2048  # images exported once per session; the real-data sources read them all (no val split)
RESOLUTION = 64  # side of the images every source starts from
VIEW_CROP = 56  # side of the views in the data-path benchmark
TRAIN_CROP = 32  # side of the views the training step sees (the quickstart's 32 px: a CPU can afford it)
# DataLoader worker processes, DALI and FFCV threads: $MLVGM_BENCH_WORKERS, else 2 (this 2-core machine's
# cores; give a many-core GPU machine more).
WORKERS = int(os.environ.get("MLVGM_BENCH_WORKERS", "2"))
PRESET = "no_color"
SOURCES = tuple(
    os.environ.get("MLVGM_BENCH_SOURCES", "cs,cs-bigbigan,cs-stylegan2,cs-paper,imagefolder,dali,ffcv").split(",")
)
# BigBiGAN at 128 px is a 68M-parameter network that renders a few images a second on a CPU (results/bench), so on a
# CPU it times fewer images (below), and the `ci` subset leaves it out (it would double CI's benchmark time, and
# its speed there is torch's convolutions', not ours).
HEAVY = frozenset({"cs-bigbigan", "cs-stylegan2"})  # fewer images on a CPU, never in `ci`, always `run_last`
RESOLUTIONS = {"cs-bigbigan": 128, "cs-stylegan2": 256}  # side of the images a source starts from, if not RESOLUTION
# Images per BigBiGAN forward on a CPU: batch 256 (512 images with the positives) in one forward does not fit in
# 24 GiB; 64 per forward divides every batch and renders about as fast per image. On CUDA: the whole batch in one
# forward.
BIGBIGAN_CHUNK = 64 if DEVICE.type == "cpu" else 0
# The paper's Figure 5; $MLVGM_BENCH_BATCHES="32,256" runs some (one process per batch size, say, each
# with its own JSON: python -m bench.figure5 reads several as one run).
BATCHES = tuple(int(b) for b in os.environ.get("MLVGM_BENCH_BATCHES", "32,64,128,256").split(","))
# The `ci` subset: both benchmarks at one batch size, so the compiled step is traced once (each cold compile of the
# shapes world's step costs tens of seconds on a CPU: results/bench/cs-compile) and the training step stays short.
CI_BATCH = 32
# Data path: rounds of at least 512 images, median of DATA_ROUNDS, after WARMUP_BATCHES untimed batches.
DATA_ROUNDS, WARMUP_BATCHES, IMAGES_PER_ROUND = 5, 3, 512
# Epoch time: one step per round (a DataLoader refills its queue during the step, so single steps are
# steady state), median of EPOCH_ROUNDS, after WARMUP_STEPS untimed (compile, worker start-up).
EPOCH_ROUNDS, WARMUP_STEPS = 4, 2
# A HEAVY source on a CPU: data path 3 rounds of one batch after one (the compile); epoch time 2 steps
# after one. Its figures there are seconds per batch, well above the noise.
SLOW_DATA_ROUNDS, SLOW_WARMUP_BATCHES, SLOW_EPOCH_ROUNDS, SLOW_WARMUP_STEPS = 3, 1, 2, 1
# The paper's epoch: ImageNet-100's size, the default of mlvgm.train's --epoch_images.
EPOCH_IMAGES = TrainConfig.epoch_images
# The preset `python -m mlvgm.train --preset shapes-ml-random --optimizer adam` trains: SimCLR, small-stem
# ResNet-18, Adam (the paper's Figure-5 optimiser), the shapes world with ML random views on z2-z5 (sigma 1,
# t 2), T_x no_color, and the Continuous-Sampling path its --cs_compile auto picks (recipe.cs_path).
BENCH_PRESET, BENCH_CHANGES = "shapes-ml-random", {"optimizer": "adam", "seed": SEED}
CONFIG = make_config(TrainConfig, PRESETS, BENCH_PRESET, BENCH_CHANGES)
assert CONFIG.augment == PRESET, "the bench's preset changed its T_x"


def _threads() -> int:
    """$OMP_NUM_THREADS when set (a shared machine), else every core this process may use."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _marks(source: str, batch: int) -> list:
    if source in HEAVY:
        return [pytest.mark.run_last]
    return [pytest.mark.ci] if batch == CI_BATCH else []


def _cases(sources: tuple[str, ...]) -> list:
    """(source, batch) for the paper's batch sizes; CI_BATCH marked `ci` but for the HEAVY sources, which are
    marked `run_last`: in a full run, their data path and training steps come after every other
    source's, so the 6 GB heap that BigBiGAN at batch 256 leaves in the process (mlvgm.hostmem keeps freed
    memory) cannot touch the others' figures (with BigBiGAN first, CS's training step read higher against the
    resident limit: results/bench)."""
    return [pytest.param(s, b, marks=_marks(s, b), id=f"{s}-{b}") for s in sources for b in BATCHES]


def _slow(source: str) -> bool:
    return source in HEAVY and DEVICE.type == "cpu"


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


class Data(NamedTuple):
    folder: Path  # ImageFolder of the exported JPEGs
    beton: Path | None  # the same images in an FFCV .beton (None without ffcv)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Data:
    """N_IMAGES shapes-world JPEGs at RESOLUTION px, once per session, and their .beton."""
    from mlvgm.data.export import export_dataset
    from mlvgm.generators import load_generator

    torch.set_num_threads(_threads())
    # What mlvgm.train does on a CPU, here for every source alike (their workers fork after it): freed tensors
    # stay in the process instead of being faulted in again every batch (mlvgm.hostmem).
    retain_freed_memory()
    root = tmp_path_factory.mktemp("sources") / "shapes"
    g = load_generator(f"shapes:resolution={RESOLUTION}")
    export_dataset(g, root, N_IMAGES, seed=SEED, val_fraction=0.0, spec=f"shapes:resolution={RESOLUTION}")
    folder = root / "train"
    beton = None
    if importlib.util.find_spec("ffcv") is not None:
        from mlvgm.data.ffcv import write_beton

        beton = write_beton(folder, root.parent / "shapes.beton", workers=WORKERS)
    return Data(folder, beton)


class PaperContinuousSampling:
    """The paper's Continuous-Sampling path (mi_ml_gen), the baseline our `ContinuousSampling` is measured against.

    Per step, as its code did: anchors z ~ N^t(0, 1, t) from scipy.stats.truncnorm on the CPU (one NumPy
    generator, not keyed by the step), positives by scipy truncated-normal noise added per latent chunk
    (`bench.kernels.baselines.paper_perturb`), both copied to the device; the generator moved to the
    device, rendered eagerly (no compile), and moved back to the CPU. Anchors and positives are rendered
    in one forward and T_x is ours, as in `ContinuousSampling`, so the two differ only in the three
    things the paper's path did differently. Same interface: steps_per_epoch, iterate(start_step).
    """

    def __init__(self, generator, views, augment: PixelAugment, batch_size: int, *, config: TrainConfig) -> None:
        import numpy as np

        self.generator = generator.eval().requires_grad_(False).to("cpu")  # the paper kept it on the CPU
        self.level_dims = tuple(generator.level_dims)
        self.sigma = tuple(views.params.sigma)  # 0 on the levels T_z leaves alone
        self.truncation, self.view_t = config.truncation, config.view_t
        self.augment, self.batch_size = augment, batch_size
        self.steps_per_epoch = steps_for(config.epoch_images, batch_size)
        self.rng = np.random.default_rng(config.seed)
        self.pixels = view_streams(config.seed, 0)

    @torch.no_grad()
    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        import numpy as np
        from scipy.stats import truncnorm

        from bench.kernels.baselines import paper_perturb

        t = self.truncation
        z = truncnorm.rvs(-t, t, size=(self.batch_size, sum(self.level_dims)), random_state=self.rng)
        anchors = torch.from_numpy(z.astype(np.float32)).to(DEVICE)
        positives, _ = paper_perturb(anchors, self.level_dims, self.sigma, self.view_t, self.rng)
        self.generator.to(DEVICE)
        both = torch.split(torch.cat([anchors, positives]), list(self.level_dims), dim=1)
        images = self.generator(list(both))
        self.generator.to("cpu")
        anchor, positive = images.chunk(2)
        first, second = (stream.at(step) for stream in self.pixels)
        return self.augment(anchor, first), self.augment(positive, second)

    def iterate(self, start_step: int = 0):
        for step in itertools.count(start_step):
            yield self.batch(step)


def cs_bigbigan(config: TrainConfig, **network) -> ContinuousSampling:
    """CS over a BigBiGAN (`network`: its constructor's options; default the published 128-px architecture) with
    seeded random weights, and the views of the paper's `bigbigan-*-ml-random` preset: N^t(0, 1, 2) on chunks 2-6,
    anchors truncated at 2. What `mlvgm.train` builds with a checkpoint, minus the checkpoint."""
    from mlvgm.generators.bigbigan import BigBiGAN

    preset = PRESETS["bigbigan-simclr-ml-random"]
    views = {k: preset[k] for k in ("view_levels", "view_sigma", "view_t", "truncation")}
    config = dataclasses.replace(config, generator="bigbigan", render_chunk=BIGBIGAN_CHUNK, **views)
    torch.manual_seed(config.seed)
    return continuous_sampling(config, BigBiGAN(**network).to(DEVICE), rank=0, world=1, device=DEVICE)


def cs_stylegan2(config: TrainConfig) -> ContinuousSampling:
    """CS over StyleGAN2 at 256 px (stylegan2-ada-pytorch's paper256 widths: channel_base 16384, 14 w's) with seeded
    random weights, in w space, and the paper's StyleGAN2 ML random views on its 14 levels (sigma 0.2 on the
    first four, 0.1 on the next four, 0.8 on the rest, t 1), anchors truncated at 0.9; bf16 on CUDA."""
    from mlvgm.generators.stylegan2 import StyleGAN2

    g = StyleGAN2(z_dim=512, w_dim=512, img_resolution=256,
                  synthesis_kwargs={"channel_base": 16384, "channel_max": 512, "conv_clamp": 256})  # fmt: skip
    levels = len(g.level_dims)
    sigma = ((0.2,) * 4 + (0.1,) * 4 + (0.8,) * levels)[:levels]
    config = dataclasses.replace(config, generator="stylegan2", truncation=0.9, view_t=1.0, view_sigma=sigma,
                                 view_levels=tuple(str(i + 1) for i in range(levels)))  # fmt: skip
    torch.manual_seed(config.seed)
    return continuous_sampling(config, g.to(DEVICE), rank=0, world=1, device=DEVICE)


def make_source(name: str, data: Data, batch: int, crop: int):
    """Source `name` delivering (view_a, view_b) of side `crop` from RESOLUTION-px images; skips when missing."""
    config = dataclasses.replace(CONFIG, batch_size=batch, crop=crop)
    augment = PixelAugment(PRESET, crop).to(DEVICE)
    common = {"seed": SEED, "resolution": RESOLUTION, "workers": WORKERS, "device": DEVICE}
    if name == "cs":
        source = build_source(config, rank=0, world=1, device=DEVICE)  # exactly what mlvgm.train runs
        assert source.generator.resolution == RESOLUTION, "the trainer's default generator changed resolution"
        return source
    if name == "cs-bigbigan":
        source = cs_bigbigan(config)
        assert source.generator.resolution == RESOLUTIONS[name]
        return source
    if name == "cs-stylegan2":
        if DEVICE.type == "cpu":
            pytest.skip("StyleGAN2 at 256 px is a GPU member: on a CPU one batch takes minutes")
        return cs_stylegan2(config)
    if name == "cs-paper":
        pytest.importorskip("scipy", reason="the paper's path draws latents with scipy (pip install scipy)")
        from mlvgm.generators import load_generator

        g = load_generator(f"shapes:resolution={RESOLUTION}")
        return PaperContinuousSampling(g, build_views(config, g), augment, batch, config=config)
    if name == "imagefolder":
        return ImageFolderSource(data.folder, augment, batch, **common)
    if name == "dali":
        pytest.importorskip("nvidia.dali", reason="DALI is not installed (pip install mlvgm[loaders])")
        from mlvgm.data.dali import DALISource

        return DALISource(data.folder, augment, batch, **common)
    if name == "ffcv":
        pytest.importorskip("ffcv", reason="FFCV is not installed (pip install mlvgm[loaders])")
        from mlvgm.data.ffcv import FFCVSource

        return FFCVSource(data.beton, augment, batch, mode="ffcv", **common)
    raise ValueError(f"unknown source {name!r}")


def _path(made) -> dict:
    """The Continuous-Sampling path a member ran (what mlvgm.train records for a run), or nothing for a loader."""
    if not isinstance(made, ContinuousSampling):
        return {}
    return {"cs_mode": made.mode, "cs_path": made.path.line()}


def _record(benchmark, source: str, **info) -> None:
    benchmark.extra_info.update(
        source=source, resolution=RESOLUTIONS.get(source, RESOLUTION), preset=PRESET,
        threads=torch.get_num_threads(), workers=WORKERS, host_memory_retained=retain_freed_memory(),
        device=DEVICE.type, device_name=torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu",
        **info,
    )  # fmt: skip


@pytest.mark.parametrize(("source", "batch"), _cases(SOURCES))
def test_data_path(benchmark, data, source: str, batch: int):
    """Images/s delivered as two augmented views: N consecutive batches of one warm iterator per round."""
    benchmark.group = f"sources-batch{batch}"
    torch.set_num_threads(_threads())
    slow = _slow(source)
    per_round = 1 if slow else max(2, IMAGES_PER_ROUND // batch)
    rounds, warmup = (SLOW_DATA_ROUNDS, SLOW_WARMUP_BATCHES) if slow else (DATA_ROUNDS, WARMUP_BATCHES)
    made = make_source(source, data, batch, VIEW_CROP)
    batches = made.iterate(0)

    def take() -> None:
        for _ in range(per_round):
            next(batches)
        _sync()

    try:
        for _ in range(warmup):  # worker start-up, torch.compile, numba: not the steady state
            next(batches)
        _sync()
        benchmark.pedantic(take, rounds=rounds, iterations=1)
    finally:
        batches.close()  # stops DataLoader workers and loader threads now, not at garbage collection
    _record(
        benchmark, source, batch=batch, crop=VIEW_CROP, batches_per_round=per_round,
        images_per_s=per_round * batch / benchmark.stats.stats.median, **_path(made),
    )  # fmt: skip


def train_step_for(batch: int) -> TrainStep:
    """The SimCLR training step mlvgm.train takes for this batch (mlvgm.train_step, at a constant learning rate),
    on DEVICE, fresh and seeded."""
    config = dataclasses.replace(CONFIG, batch_size=batch, crop=TRAIN_CROP)
    torch.manual_seed(SEED)
    method = channels_last(build_method(config).to(DEVICE), DEVICE).train()
    optimizer = build_optimizer(config, method.param_groups(peak_lr(config)))
    return TrainStep(method, optimizer, amp=use_amp(config, DEVICE))


@pytest.mark.parametrize(("source", "batch"), _cases(("resident", *SOURCES)))
def test_epoch_time(benchmark, data, source: str, batch: int):
    """Time, energy and CO2 per training step fed by `source`; `resident` is the limit (no loading at all)."""
    benchmark.group = f"epoch-time-batch{batch}"
    torch.set_num_threads(_threads())
    if source == "resident":  # one real batch, decoded in this process, kept on the device
        folder = ImageFolderSource(
            data.folder, PixelAugment(PRESET, TRAIN_CROP).to(DEVICE), batch, seed=SEED, resolution=RESOLUTION,
            workers=0, device=DEVICE,
        )  # fmt: skip
        made, batches = None, itertools.repeat(next(folder.iterate(0)))
    else:
        made = make_source(source, data, batch, TRAIN_CROP)
        batches = made.iterate(0)
    train_step = train_step_for(batch)

    def step() -> None:
        train_step(*next(batches))
        _sync()

    rounds, warmup = (SLOW_EPOCH_ROUNDS, SLOW_WARMUP_STEPS) if _slow(source) else (EPOCH_ROUNDS, WARMUP_STEPS)
    try:
        for _ in range(warmup):
            step()
        with EnergyMeter() as meter:
            benchmark.pedantic(step, rounds=rounds, iterations=1)
    finally:
        if hasattr(batches, "close"):
            batches.close()
    per_step = benchmark.stats.stats.median
    steps_per_epoch = steps_for(EPOCH_IMAGES, batch)
    energy = dict(meter.record)
    per_epoch = steps_per_epoch / rounds  # the meter covered `rounds` steps
    _record(
        benchmark, source, batch=batch, crop=TRAIN_CROP, amp=train_step.amp, steps_timed=rounds,
        time_per_step_s=per_step, epoch_images=EPOCH_IMAGES, steps_per_epoch=steps_per_epoch,
        epoch_time_s=per_step * steps_per_epoch,
        energy_kwh_per_epoch=None if energy["energy_kwh"] is None else energy["energy_kwh"] * per_epoch,
        co2_kg_per_epoch=None if energy["emissions_kg"] is None else energy["emissions_kg"] * per_epoch,
        energy=energy, **_path(made),
    )  # fmt: skip
