"""Data parallelism under torchrun: which rank this process is, its device, and the collectives the
trainer needs. Without torchrun (WORLD_SIZE unset) a run is one process and none of this is touched.

    python -m mlvgm.train ...                                   one process
    torchrun --nproc_per_node 4 -m mlvgm.train --out RUN ...    four ranks: gloo on CPU, nccl on CUDA
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mlvgm.cli import launched_rank, launched_world, resolve_device
from mlvgm.errors import InputError


@dataclass(frozen=True)
class Distributed:
    rank: int
    world: int
    device: torch.device

    @property
    def lead(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0


def init_distributed(device: str, batch_size: int) -> Distributed:
    """torchrun sets RANK / WORLD_SIZE / LOCAL_RANK: gloo on CPU, nccl on CUDA; else one process on `device`."""
    world = launched_world()
    if world == 1:
        return Distributed(0, 1, resolve_device(device))
    rank, local = launched_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    if batch_size % world:
        raise InputError(f"batch_size {batch_size} is not divisible by the world size {world}")
    cuda = torch.cuda.is_available() and device != "cpu"
    chosen = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Distributed(rank, world, chosen)


def agree_min(value: int, world: int) -> int:
    """The smallest of every rank's `value` (all ranks must call it): a decision all ranks then share."""
    if world == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
