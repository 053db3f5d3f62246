"""Double buffering (mlvgm.data.overlap): the stream protocol checked on a CPU with a recording fake.

A real GPU runs each stream's operations in order and a wait after the event's record; nothing else is
ordered. The fake logs the operations of both streams in host order, and the tests build that
happens-before relation from the log and check the two properties that make the batches right: the
trainer's read of a slot comes after the copy of its step into it, and the next copy into that slot
comes after the trainer's read.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager

import torch

from mlvgm.data.overlap import DoubleBuffer, SameStream


class RecordingStreams:
    """Streams that log every operation as (stream, kind, payload) in host order."""

    overlaps = True

    def __init__(self, *, wait_released: bool = True) -> None:
        self.log: list[tuple[str, str, object]] = []
        self.stream = "current"
        self.wait_released = wait_released  # False: a broken producer, to show the check can fail
        self.ids = itertools.count()

    @contextmanager
    def on_side(self):
        before, self.stream = self.stream, "side"
        try:
            yield
        finally:
            self.stream = before

    def event(self) -> int:
        return next(self.ids)

    def record(self, event, *, side: bool) -> None:
        self.log.append(("side" if side else "current", "record", event))

    def wait(self, event, *, side: bool) -> None:
        if side and not self.wait_released and event in self.released_events:
            return
        self.log.append(("side" if side else "current", "wait", event))

    def sync_side_with_current(self) -> None:
        pass

    def copy(self, buffers, tensors) -> None:
        for buffer, tensor in zip(buffers, tensors, strict=True):
            buffer.copy_(tensor)
        self.log.append((self.stream, "write", (id(buffers[0]), int(tensors[0][0]))))

    def read(self, batch) -> None:
        self.log.append(("current", "read", (id(batch[0]), int(batch[0][0]))))


def happens_before(log):
    """reach[i][j]: op i is ordered before op j on the device (stream order plus record -> wait edges)."""
    n = len(log)
    edges = {i: set() for i in range(n)}
    last_on, last_record = {}, {}
    for i, (stream, kind, payload) in enumerate(log):
        if stream in last_on:
            edges[last_on[stream]].add(i)
        last_on[stream] = i
        if kind == "record":
            last_record[payload] = i
        elif kind == "wait" and payload in last_record:
            edges[last_record[payload]].add(i)
    reach = []
    for i in range(n):
        seen, todo = set(), [i]
        while todo:
            for j in edges[todo.pop()]:
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        reach.append(seen)
    return reach


def run(streams: RecordingStreams, steps: int, start: int = 0) -> list[int]:
    buffer = DoubleBuffer(lambda step: (torch.full((4,), float(step)),), streams)
    streams.released_events = set(buffer.released)
    got = []
    for _, batch in zip(range(steps), buffer.iterate(start), strict=False):
        streams.read(batch)
        got.append(int(batch[0][0]))
    return got


def violations(log) -> list[str]:
    """Reads not ordered after their step's write, and writes not ordered after the previous read of the slot."""
    reach = happens_before(log)
    writes = [(i, p) for i, (_, kind, p) in enumerate(log) if kind == "write"]
    reads = [(i, p) for i, (_, kind, p) in enumerate(log) if kind == "read"]
    bad = []
    for r, (slot, step) in reads:
        w = next(i for i, p in writes if p == (slot, step))
        if r not in reach[w]:
            bad.append(f"read of step {step} not after its write")
        for later, (other, s) in writes:
            if other == slot and s > step and later not in reach[r]:
                bad.append(f"write of step {s} into the slot of step {step} not after that step's read")
    return bad


def test_every_read_follows_its_write_and_every_overwrite_follows_the_read():
    streams = RecordingStreams()
    assert run(streams, 6, start=3) == [3, 4, 5, 6, 7, 8]
    assert violations(streams.log) == []
    kinds = [(s, k) for s, k, _ in streams.log]
    assert ("side", "write") in kinds and kinds.index(("side", "write")) < kinds.index(("current", "read"))


def test_the_check_catches_a_producer_that_does_not_wait_for_the_trainer():
    streams = RecordingStreams(wait_released=False)
    run(streams, 5)
    assert any("not after that step's read" in v for v in violations(streams.log))


def test_the_next_batch_is_enqueued_before_the_trainer_uses_this_one():
    """Overlap: the side stream's write of step s + 1 comes before the trainer's read of step s in host order,
    so the device can run it during the trainer's step."""
    streams = RecordingStreams()
    run(streams, 3)
    order = [(k, p[1]) for _, k, p in streams.log if k in ("write", "read")]
    assert order[:4] == [("write", 0), ("write", 1), ("read", 0), ("write", 2)]


def test_same_stream_produces_in_order_lazily_and_resumes_exactly():
    made = []

    def produce(step):
        made.append(step)
        return (torch.tensor([step]),)

    batches = DoubleBuffer(produce, SameStream()).iterate(7)
    assert [int(next(batches)[0]) for _ in range(3)] == [7, 8, 9]
    assert made == [7, 8, 9]  # no batch made ahead of its request on a CPU
