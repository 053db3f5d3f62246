"""mlvgm.recipe: the Continuous-Sampling path a config selects (and records), and what it hands the source."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from mlvgm import recipe
from mlvgm.config import make_config
from mlvgm.generators import load_generator
from mlvgm.recipe import CPU_COMPILE_MIN_STEPS, CSPath, continuous_sampling, cs_path, kernels_used, planned_steps
from mlvgm.runs import upgraded
from mlvgm.train_config import PRESETS, TrainConfig

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU


def steps_config(steps: int, **fields) -> TrainConfig:
    """A config planning exactly `steps` steps (one epoch of `steps` batches of 8)."""
    return TrainConfig(epochs=1, batch_size=8, epoch_images=8 * steps, **fields)


def test_planned_steps_are_epochs_times_the_epochs_batches():
    config = TrainConfig(epochs=3, batch_size=64, epoch_images=1000)
    assert planned_steps(config) == 3 * (1000 // 64)


def test_auto_on_a_cpu_compiles_from_the_measured_number_of_steps():
    assert CPU_COMPILE_MIN_STEPS > 1
    short = cs_path(steps_config(CPU_COMPILE_MIN_STEPS - 1), CPU)
    long = cs_path(steps_config(CPU_COMPILE_MIN_STEPS), CPU)
    assert (short.compile, short.cuda_graph, short.overlap, short.mode) == (False, False, False, "eager")
    assert (long.compile, long.cuda_graph, long.overlap, long.mode) == (True, False, False, "compiled")
    assert "would not repay" in short.why and f"{CPU_COMPILE_MIN_STEPS - 1:,} planned steps" in short.why
    assert "repay the compile" in long.why


def test_auto_on_cuda_is_the_captured_overlapped_step_however_short_the_run():
    path = cs_path(steps_config(1), CUDA)
    assert path == CSPath(compile=True, cuda_graph=True, overlap=True, why=path.why) and path.mode == "graph"
    assert path.line() == f"Continuous Sampling: graph, overlapped ({path.why})"
    assert not cs_path(steps_config(1, overlap=False), CUDA).overlap


@pytest.mark.parametrize("device", [CPU, CUDA])
def test_on_and_off_are_obeyed_on_every_device(device):
    on, off = (cs_path(steps_config(1_000_000, cs_compile=v), device) for v in ("on", "off"))
    assert on.compile and on.cuda_graph == (device.type == "cuda") and on.why == "--cs_compile on"
    assert not off.compile and not off.cuda_graph and off.why == "--cs_compile off"


def test_every_paper_preset_compiles_on_a_cpu_and_the_quickstart_runs_the_rule():
    for name, fields in PRESETS.items():
        if fields.get("source") == "imagefolder":
            continue
        config = make_config(TrainConfig, PRESETS, name, {})
        assert cs_path(config, CPU).compile == (planned_steps(config) >= CPU_COMPILE_MIN_STEPS), name
        if name != "quickstart":  # 100 epochs of ImageNet-100's size
            assert cs_path(config, CPU).compile, name


def test_continuous_sampling_builds_the_selected_path_on_a_cpu():
    g = load_generator("shapes:resolution=32")
    for value, mode in (("on", "compiled"), ("off", "eager")):
        config = steps_config(10, cs_compile=value, augment="none", crop=32)
        source = continuous_sampling(config, g, rank=0, world=1, device=CPU)
        assert source.mode == mode and (source.step_graph is not None) == (value == "on")


def test_continuous_sampling_on_cuda_asks_for_the_graph_and_the_overlap(monkeypatch):
    """The default config on an (emulated) CUDA device: the source is asked for the compiled step, its CUDA graph
    and the side-stream overlap (their own behaviour is tested in tests/mlvgm/data/test_step_graph.py)."""
    asked = {}

    class Recorder:
        def __init__(self, *args, **kwargs) -> None:
            asked.update(kwargs)

    class NoAugment:
        def __init__(self, *args, **kwargs) -> None: ...

        def to(self, device):
            return self

    monkeypatch.setattr(recipe, "ContinuousSampling", Recorder)
    monkeypatch.setattr(recipe, "PixelAugment", NoAugment)
    continuous_sampling(TrainConfig(), load_generator("shapes:resolution=32"), rank=0, world=1, device=CUDA)
    assert (asked["compile"], asked["cuda_graphs"], asked["overlap"]) == (True, True, True)


def test_kernels_used_names_the_traced_perturbation_inside_the_compiled_step(caplog):
    compiled, eager = steps_config(10, cs_compile="on"), steps_config(10, cs_compile="off")
    assert kernels_used(eager, CPU) == {"infonce": "compiled", "perturb": "compiled"}
    assert kernels_used(compiled, CPU) == {"infonce": "compiled", "perturb": "traced"}
    assert kernels_used(dataclasses.replace(compiled, kernels="torch"), CPU)["perturb"] == "torch"  # traced as is
    assert "perturb" not in kernels_used(dataclasses.replace(compiled, views="none"), CPU)
    with caplog.at_level(logging.WARNING, logger="mlvgm.train"):
        used = kernels_used(dataclasses.replace(compiled, kernels="triton"), CUDA)
    assert used == {"infonce": "triton", "perturb": "traced"}
    lines = [r.message for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("--kernels triton: T_z's perturbation runs traced")


def test_an_earlier_versions_run_config_resumes_on_the_path_it_ran():
    assert upgraded({"compile_generator": True, "cuda_graphs": "auto"}) == {"cs_compile": "on", "cuda_graphs": "off"}
    assert upgraded({"compile_generator": False, "cuda_graphs": "on"}) == {"cs_compile": "off", "cuda_graphs": "on"}
    assert upgraded({"cs_compile": "auto", "seed": 3}) == {"cs_compile": "auto", "seed": 3}
