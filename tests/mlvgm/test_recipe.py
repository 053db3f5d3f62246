"""mlvgm.recipe: the Continuous-Sampling path a config selects (and records), and what it hands the source."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from mlvgm import recipe
from mlvgm.config import make_config
from mlvgm.generators import load_generator
from mlvgm.recipe import (
    CPU_COMPILE_MIN_PIXELS,
    CSPath,
    continuous_sampling,
    cs_path,
    kernels_used,
    planned_pixels,
    planned_steps,
)
from mlvgm.runs import upgraded
from mlvgm.train_config import PRESETS, TrainConfig

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU


def steps_config(steps: int, **fields) -> TrainConfig:
    """A config planning exactly `steps` steps (one epoch of `steps` batches of 8)."""
    return TrainConfig(epochs=1, batch_size=8, epoch_images=8 * steps, **fields)


def test_planned_steps_and_pixels():
    config = TrainConfig(epochs=3, batch_size=64, epoch_images=1000)
    assert planned_steps(config) == 3 * (1000 // 64) and planned_pixels(config, 32) == 3 * 15 * 64 * 32 * 32


def test_auto_on_a_cpu_compiles_from_the_measured_number_of_pixels():
    """The break-even is in rendered pixels: 500M is 7,630 steps of 64 pairs at 32 px, or 477 of 256 at 64 px."""
    at_32 = -(-CPU_COMPILE_MIN_PIXELS // (8 * 32**2))  # steps of 8 pairs at 32 px that reach it
    short, long = cs_path(steps_config(at_32 - 1), CPU, 32), cs_path(steps_config(at_32), CPU, 32)
    assert (
        planned_pixels(steps_config(at_32), 32) >= CPU_COMPILE_MIN_PIXELS > planned_pixels(steps_config(at_32 - 1), 32)
    )
    assert (short.compile, short.cuda_graph, short.overlap, short.mode) == (False, False, False, "eager")
    assert (long.compile, long.cuda_graph, long.overlap, long.mode) == (True, False, False, "compiled")
    assert short.why == (f"auto: {at_32 - 1:,} planned steps of 8 pairs at 32 px would not repay the compile on a CPU "
                         "(--cs_compile on pays where the compile cache already holds it)")  # fmt: skip
    assert long.why == f"auto: {at_32:,} planned steps of 8 pairs at 32 px repay the compile on a CPU"
    assert cs_path(steps_config(at_32 // 4), CPU, 64).compile  # 4x the pixels per image: a quarter of the steps


def test_auto_on_cuda_is_the_captured_overlapped_step_however_short_the_run():
    path = cs_path(steps_config(1), CUDA, 32)
    assert path == CSPath(compile=True, cuda_graph=True, overlap=True, why=path.why) and path.mode == "graph"
    assert path.line() == f"Continuous Sampling: graph, overlapped ({path.why})"
    assert not cs_path(steps_config(1, overlap=False), CUDA, 32).overlap


@pytest.mark.parametrize("device", [CPU, CUDA])
def test_on_and_off_are_obeyed_on_every_device(device):
    on, off = (cs_path(steps_config(1_000_000, cs_compile=v), device, 64) for v in ("on", "off"))
    assert on.compile and on.cuda_graph == (device.type == "cuda") and on.why == "--cs_compile on"
    assert not off.compile and not off.cuda_graph and off.why == "--cs_compile off"


def test_the_quickstart_and_the_miniature_run_eagerly_and_the_paper_presets_compile_on_a_cpu():
    from mlvgm.miniature_design import BASE

    quickstart = make_config(TrainConfig, PRESETS, "quickstart", {})
    assert not cs_path(quickstart, CPU, 32).compile  # 240 steps of 64 pairs at 32 px: 16M pixels
    miniature = TrainConfig(**{**BASE, "epochs": 1, "epoch_images": 500 * 64})
    assert not cs_path(miniature, CPU, 32).compile  # 500 steps: 33M
    for name, fields in PRESETS.items():
        if fields.get("source") == "imagefolder" or name == "quickstart":
            continue
        config = make_config(TrainConfig, PRESETS, name, {})  # 100 epochs of ImageNet-100's size
        assert cs_path(config, CPU, 32).compile, name


def test_continuous_sampling_builds_the_selected_path_on_a_cpu():
    g = load_generator("shapes:resolution=32")
    for value, mode in (("on", "compiled"), ("off", "eager")):
        config = steps_config(10, cs_compile=value, augment="none", crop=32)
        source = continuous_sampling(config, g, rank=0, world=1, device=CPU)
        assert source.mode == mode == source.path.mode and (source.step_graph is not None) == (value == "on")


def test_continuous_sampling_on_cuda_asks_for_the_graph_and_the_overlap(monkeypatch):
    """The default config on an (emulated) CUDA device: the source is asked for the compiled step, its CUDA graph
    and the side-stream overlap (their own behaviour is tested in tests/mlvgm/data/test_step_graph.py)."""
    asked = {}

    class Recorder:
        def __init__(self, *args, **kwargs) -> None:
            asked.update(kwargs)
            self.path = None

    class NoAugment:
        def __init__(self, *args, **kwargs) -> None: ...

        def to(self, device):
            return self

    monkeypatch.setattr(recipe, "ContinuousSampling", Recorder)
    monkeypatch.setattr(recipe, "PixelAugment", NoAugment)
    source = continuous_sampling(TrainConfig(), load_generator("shapes:resolution=32"), rank=0, world=1, device=CUDA)
    assert (asked["compile"], asked["cuda_graphs"], asked["overlap"]) == (True, True, True)
    assert source.path.mode == "graph"


def test_kernels_used_names_the_traced_perturbation_inside_the_compiled_step(caplog):
    config = steps_config(10)
    assert kernels_used(config, CPU) == {"infonce": "compiled", "perturb": "compiled"}
    assert kernels_used(config, CPU, cs_compiled=True) == {"infonce": "compiled", "perturb": "traced"}
    torch_impl = dataclasses.replace(config, kernels="torch")
    assert kernels_used(torch_impl, CPU, cs_compiled=True)["perturb"] == "torch"  # traced as it is
    assert "perturb" not in kernels_used(dataclasses.replace(config, views="none"), CPU, cs_compiled=True)
    with caplog.at_level(logging.WARNING, logger="mlvgm.train"):
        used = kernels_used(dataclasses.replace(config, kernels="triton"), CUDA, cs_compiled=True)
    assert used == {"infonce": "triton", "perturb": "traced"}
    lines = [r.message for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("--kernels triton: T_z's perturbation runs traced")


def test_an_earlier_versions_run_config_resumes_on_the_path_it_ran():
    assert upgraded({"compile_generator": True, "cuda_graphs": "auto"}) == {"cs_compile": "on", "cuda_graphs": "off"}
    assert upgraded({"compile_generator": False, "cuda_graphs": "on"}) == {"cs_compile": "off", "cuda_graphs": "on"}
    assert upgraded({"cs_compile": "auto", "seed": 3}) == {"cs_compile": "auto", "seed": 3}
