"""A producer step as one compiled graph, replayed from a CUDA graph where the device allows.

    step = StepGraph(produce, device, compile=True, cuda_graphs=True)
    outputs = step(s)          # produce(s) for an int step s

`produce(step)` takes the step as a 0-d int64 tensor on the device and returns a tuple of tensors; it
must be a pure function of that step (counter-based draws keyed by it, no host reads), which is what
lets it be one graph:

- compile: `torch.compile(produce, fullgraph=True, dynamic=False)`: one static-shaped graph, the step a
  tensor input, so every step reuses the code. The step tensor is written in place (`fill_`, no host
  sync), so a call issues two ops outside the graph (the fill and the compiled call).
- cuda_graphs: on a CUDA device, the compiled step is captured into a `torch.cuda.CUDAGraph` after a
  warm-up on a side stream, and each call replays it: one launch for the whole step. Its outputs are
  static buffers, overwritten by the next call (copy them, as `mlvgm.data.overlap` does, to keep them).

Where compiling or capturing fails (a generator that reads values on the host, a dynamic shape), the
step says why in one log line and runs the level below it: compiled without the graph, or eager.
`mode` tells which runs ("graph", "compiled" or "eager") and `why` the reason for a fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

from mlvgm.errors import InputError

_log = logging.getLogger("mlvgm.data")

Produce = Callable[[Tensor], tuple[Tensor, ...]]
# Untimed calls on a side stream before a capture: compile, autotuning and the allocator's first blocks
# happen there, not inside the graph (PyTorch's recipe for whole-network capture).
CAPTURE_WARMUP = 3


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class StepGraph:
    """produce(step) run as one compiled graph (and a CUDA graph on CUDA), with clean fallbacks."""

    def __init__(self, produce: Produce, device: torch.device | str, *, compile: bool = True,
                 cuda_graphs: bool = False, name: str = "step") -> None:  # fmt: skip
        self.device = torch.device(device)
        if cuda_graphs and self.device.type != "cuda":
            raise InputError(f"CUDA graphs need a CUDA device, not {self.device}: turn them off (--cuda_graphs off)")
        self.produce, self.name = produce, name
        self.mode = "compiled" if compile else "eager"
        self.want_graph = cuda_graphs
        self.why = ""
        self.fn: Produce = torch.compile(produce, fullgraph=True, dynamic=False) if compile else produce
        self.step = torch.zeros((), dtype=torch.int64, device=self.device)  # the graph's one input
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: tuple[Tensor, ...] = ()
        self.calls = 0

    def __call__(self, step: int) -> tuple[Tensor, ...]:
        self.step.fill_(step)
        if self.calls == 0:
            out = self._first(step)
        elif self.graph is not None:
            self.graph.replay()
            out = self.outputs
        else:
            out = self.fn(self.step)
        self.calls += 1
        return out

    def _fallback(self, mode: str, failed: str, exc: BaseException, *, detail: str = "") -> None:
        self.why = f"{failed} failed: {_first_line(exc)}"
        _log.warning(f"{self.name}: running {mode}{detail} ({self.why})")
        self.mode = mode

    def _first(self, step: int) -> tuple[Tensor, ...]:
        """The first call: compile (falling back to eager), then capture where asked (falling back to compiled)."""
        try:
            out = tuple(self.fn(self.step))
        except InputError:
            raise
        except Exception as exc:  # any compiler failure: the eager step is the same function
            if self.mode == "eager":
                raise
            self._fallback("eager", "torch.compile", exc)
            self.fn = self.produce
            out = tuple(self.fn(self.step))
        if self.want_graph and self.mode == "compiled":
            out = self._capture(step) or out
        return out

    def _capture(self, step: int) -> tuple[Tensor, ...] | None:
        """Capture the compiled step into a CUDA graph; None (and the compiled step) where capture fails."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        try:
            with torch.cuda.stream(side):
                for _ in range(CAPTURE_WARMUP):
                    self.fn(self.step)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = tuple(self.fn(self.step))
        except Exception as exc:  # noqa: BLE001 -- a step that syncs or allocates on the host cannot be captured
            self._fallback("compiled", "capture", exc, detail=", without a CUDA graph")
            return None
        self.graph, self.outputs, self.mode = graph, outputs, "graph"
        self.step.fill_(step)
        graph.replay()
        return outputs
