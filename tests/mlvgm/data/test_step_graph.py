"""The compiled Continuous-Sampling step (mlvgm.data.step_graph, ContinuousSampling.produce): the same
views as the step-by-step path, one graph with almost nothing outside it, and clean fallbacks."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from mlvgm.augment import PixelAugment
from mlvgm.data.sources import ContinuousSampling
from mlvgm.data.step_graph import StepGraph
from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.base import MLVGM
from mlvgm.strategies.none import NoViews
from mlvgm.strategies.random import RandomViews
from mlvgm.view_strategies import LevelNoise


class Tiny(MLVGM):
    """Two levels mapped linearly to 16-px images: compiles in seconds."""

    level_dims = (4, 6)
    resolution = 16

    def __init__(self, sync: bool = False) -> None:
        super().__init__()
        self.maps = torch.nn.Parameter(torch.randn(10, 3 * 16 * 16, generator=torch.Generator().manual_seed(0)))
        self.sync = sync  # read a value on the host, as a generator that cannot be one graph does

    def forward(self, latents):
        x = torch.cat(list(latents), dim=1) @ self.maps
        if self.sync and float(x.mean()) > 1e9:
            x = x * 0
        return torch.sigmoid(x).view(-1, 3, 16, 16)


def cs(g, *, compile: bool, augment: str = "no_color", views=None, batch: int = 8):
    views = views or RandomViews(g, {2: LevelNoise(sigma=0.5, sigma_max=1.5, p=0.7)})  # gates and sigma ranges
    return ContinuousSampling(g, views, PixelAugment(augment, 12), batch, seed=3, rank=1, steps_per_epoch=5,
                              truncation=2.0, compile=compile)  # fmt: skip


def ops_outside_graphs(source: ContinuousSampling, step: int) -> Counter:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        source.batch(step)
    return Counter(e.name for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::"))


@pytest.mark.parametrize("augment", ["no_color", "simclr"])
def test_produce_with_a_tensor_step_is_the_step_by_step_batch(augment):
    """Eager, the traced draws give the same latents bit for bit (integer Philox), and views equal within
    float32 rounding (T_z's inverse error function: the compiled polynomial against the plain ops)."""
    g = load_generator("shapes:resolution=32")
    source = cs(g, compile=False, augment=augment)
    for step in (0, 7):
        expected = source.batch(step)
        out = source.produce(torch.tensor(step))
        if source.colour_after_graph:  # the graph's images, then T_x as the step-by-step path runs it
            first, second = (stream.at(step) for stream in source.pixels)
            out = source.augment(out[0], first), source.augment(out[1], second)
        for got, want in zip(out, expected, strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_the_compiled_step_is_one_graph_with_the_same_views_and_resumes_exactly():
    g = Tiny()
    fused, plain = cs(g, compile=True), cs(g, compile=False)
    first = fused.batch(4)
    assert fused.step_graph.mode == "compiled" and fused.step_graph.why == ""
    for step in (4, 5, 9):
        for got, want in zip(fused.batch(step), plain.batch(step), strict=True):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    resumed = next(cs(g, compile=True).iterate(4))
    assert all(torch.equal(a, b) for a, b in zip(first, resumed, strict=True))
    outside = ops_outside_graphs(fused, 6)
    assert sum(outside.values()) <= 2, outside  # the step's fill_, nothing else
    assert sum(ops_outside_graphs(plain, 6).values()) > 20  # the same step called eagerly


def test_a_colour_preset_runs_its_colour_ops_after_the_graph():
    g = Tiny()
    fused, plain = cs(g, compile=True, augment="simclr", views=NoViews(Tiny())), cs(g, compile=False, augment="simclr")
    assert fused.colour_after_graph and not cs(g, compile=False).colour_after_graph
    plain.views = fused.views
    for got, want in zip(fused.batch(2), plain.batch(2), strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert fused.step_graph.mode == "compiled"


def test_a_generator_that_reads_on_the_host_falls_back_to_eager_saying_why(caplog):
    g = Tiny(sync=True)
    source = cs(g, compile=True)
    with caplog.at_level(logging.WARNING, logger="mlvgm.data"):
        got = source.batch(1)
    assert source.step_graph.mode == "eager" and "torch.compile failed" in source.step_graph.why
    assert len([r for r in caplog.records if "Continuous Sampling step: running eager" in r.message]) == 1
    for a, b in zip(got, cs(g, compile=False).batch(1), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_cuda_graphs_need_a_cuda_device():
    with pytest.raises(InputError, match="CUDA graphs need a CUDA device"):
        StepGraph(lambda step: (step,), "cpu", cuda_graphs=True)


class FakeGraphs:
    """torch.cuda's stream and graph API, emulated on a CPU: a captured graph replays by running the captured
    function again into the tensors it returned at capture (what a CUDA graph's static outputs are)."""

    def __init__(self, fail_capture: bool = False) -> None:
        self.fail_capture, self.events = fail_capture, []
        fake = self

        class Graph:
            def replay(self) -> None:
                fake.events.append("replay")
                for static, fresh in zip(self.outputs, self.fn(), strict=True):
                    static.copy_(fresh)

        class Capture:
            def __init__(self, graph) -> None:
                self.graph = graph

            def __enter__(self):
                fake.events.append("capture")
                if fake.fail_capture:
                    raise RuntimeError("operation not permitted when stream is capturing")
                fake.capturing = self.graph

            def __exit__(self, *exc) -> None:
                fake.capturing = None

        self.Graph, self.Capture = Graph, Capture

    def install(self, monkeypatch, step: StepGraph) -> None:
        from contextlib import nullcontext

        import mlvgm.data.step_graph as module

        class Cuda:
            Stream = staticmethod(lambda device: type("S", (), {"wait_stream": lambda self, other: None})())
            current_stream = Stream
            stream = staticmethod(lambda s: nullcontext())
            CUDAGraph = self.Graph
            graph = self.Capture

        produce = step.fn

        def traced(t):  # what capture records: the step as it is read at replay time
            out = produce(t)
            graph = getattr(self, "capturing", None)
            if graph is not None:
                graph.fn, graph.outputs = (lambda: produce(t)), out
            return out

        step.fn, step.want_graph = traced, True
        monkeypatch.setattr(module.torch, "cuda", Cuda)


def test_a_captured_step_replays_into_static_outputs(monkeypatch):
    step = StepGraph(lambda t: (t.float() * torch.ones(3), t + 1), "cpu", compile=False)
    step.mode = "compiled"  # as if torch.compile had succeeded: only a compiled step is captured
    fake = FakeGraphs()
    fake.install(monkeypatch, step)
    first = step(5)
    assert step.mode == "graph" and fake.events == ["capture", "replay"]
    assert first[0].tolist() == [5.0] * 3 and int(first[1]) == 6
    second = step(9)
    assert second[0] is first[0] and first[0].tolist() == [9.0] * 3  # static: the next replay overwrites it
    assert fake.events[-1] == "replay"


def test_a_step_that_cannot_be_captured_runs_compiled_saying_why(monkeypatch, caplog):
    step = StepGraph(lambda t: (t * 2,), "cpu", compile=False)
    step.mode = "compiled"  # as if torch.compile had succeeded
    FakeGraphs(fail_capture=True).install(monkeypatch, step)
    with caplog.at_level(logging.WARNING, logger="mlvgm.data"):
        assert int(step(4)[0]) == 8 and int(step(6)[0]) == 12
    assert step.mode == "compiled" and step.graph is None
    assert step.why == "capture failed: RuntimeError: operation not permitted when stream is capturing"
    assert any("running compiled, without a CUDA graph" in r.message for r in caplog.records)
