"""Produce step s + 1 on a side CUDA stream while the trainer uses step s: double buffering with events.

    batches = DoubleBuffer(produce, CudaStreams(device)).iterate(start_step)

`produce(step)` returns a tuple of tensors (a Continuous-Sampling pair). Two slots of static buffers
hold the batches; for step s:

    side stream:     wait released[k'] -> produce(s + 1) -> copy into slot k' -> record ready[k']
    trainer stream:  wait ready[k] -> (the trainer's step on slot k) -> record released[k]

with k = s % 2 and k' = (s + 1) % 2. The producer never writes a slot before the trainer's kernels that
read it have run (released), and the trainer never reads a slot before its copy has run (ready), so
the side stream's work runs during the trainer's step, as a loader's workers do. Nothing waits on the
host. A yielded batch stays valid until the next one is requested: the trainer must not keep it longer
(copy it to keep it). The batch at step s is still produce(s): a run resumed at s gets what it got.

The stream operations go through a small interface (`Streams`) so that the ordering is testable on a
CPU: `SameStream` runs everything in order on the calling thread (the CPU path; no copies), and the
tests replay the protocol with a recording fake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

import torch
from torch import Tensor

Produce = Callable[[int], tuple[Tensor, ...]]
SLOTS = 2


class Streams(Protocol):
    """What double buffering needs from a device: a side stream, events, waits, a stream context."""

    overlaps: bool  # False: no side stream, the producer runs in order when a batch is asked for

    def on_side(self) -> AbstractContextManager: ...
    def event(self) -> object: ...
    def record(self, event: object, *, side: bool) -> None: ...
    def wait(self, event: object, *, side: bool) -> None: ...
    def sync_side_with_current(self) -> None: ...
    def copy(self, buffers: tuple[Tensor, ...], tensors: tuple[Tensor, ...]) -> None: ...


class SameStream:
    """No side stream (a CPU): the producer runs in order on the calling thread, batches are not copied."""

    overlaps = False

    def on_side(self) -> AbstractContextManager:
        return nullcontext()

    def event(self) -> None:
        return None

    def record(self, event: object, *, side: bool) -> None:
        pass

    def wait(self, event: object, *, side: bool) -> None:
        pass

    def sync_side_with_current(self) -> None:
        pass

    def copy(self, buffers: tuple[Tensor, ...], tensors: tuple[Tensor, ...]) -> None:
        for buffer, tensor in zip(buffers, tensors, strict=True):
            buffer.copy_(tensor)


class CudaStreams:
    """A side CUDA stream beside the device's current stream (the trainer's)."""

    overlaps = True

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.side = torch.cuda.Stream(self.device)

    def current(self) -> torch.cuda.Stream:
        return torch.cuda.current_stream(self.device)

    def on_side(self) -> AbstractContextManager:
        return torch.cuda.stream(self.side)

    def event(self) -> torch.cuda.Event:
        return torch.cuda.Event()

    def record(self, event: torch.cuda.Event, *, side: bool) -> None:
        event.record(self.side if side else self.current())

    def wait(self, event: torch.cuda.Event, *, side: bool) -> None:
        (self.side if side else self.current()).wait_event(event)

    def sync_side_with_current(self) -> None:
        self.side.wait_stream(self.current())  # the producer's inputs (weights, buffers) are ready

    def copy(self, buffers: tuple[Tensor, ...], tensors: tuple[Tensor, ...]) -> None:
        for buffer, tensor in zip(buffers, tensors, strict=True):
            buffer.copy_(tensor, non_blocking=True)


class DoubleBuffer:
    """Batches of produce(step), each made on the side stream one step ahead of its use."""

    def __init__(self, produce: Produce, streams: Streams) -> None:
        self.produce, self.streams = produce, streams
        self.slots: list[tuple[Tensor, ...] | None] = [None] * SLOTS
        self.ready = [streams.event() for _ in range(SLOTS)]
        self.released = [streams.event() for _ in range(SLOTS)]
        self.used = [False] * SLOTS  # whether released[k] has been recorded (a never-used slot is free)

    def _fill(self, step: int) -> None:
        """Enqueue produce(step) into its slot on the side stream."""
        k, s = step % SLOTS, self.streams
        if not s.overlaps:
            self.slots[k] = tuple(self.produce(step))
            return
        with s.on_side():
            if self.used[k]:
                s.wait(self.released[k], side=True)
            out = tuple(self.produce(step))
            if self.slots[k] is None:
                self.slots[k] = tuple(torch.empty_like(t) for t in out)
            s.copy(self.slots[k], out)
            s.record(self.ready[k], side=True)

    def iterate(self, start_step: int = 0) -> Iterator[tuple[Tensor, ...]]:
        s = self.streams
        s.sync_side_with_current()
        self._fill(start_step)
        step = start_step
        while True:
            k = step % SLOTS
            if s.overlaps:
                self._fill(step + 1)  # enqueued before the trainer's step s, so it runs during it
            s.wait(self.ready[k], side=False)
            yield self.slots[k]
            s.record(self.released[k], side=False)  # the trainer's use of slot k is enqueued
            self.used[k] = True
            step += 1
            if not s.overlaps:
                self._fill(step)
