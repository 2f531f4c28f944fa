"""Data-parallel plumbing for the trainer (single process or DDP).

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :func:`setup` joins the process
group (NCCL on GPUs, gloo on CPUs) with ``env://``; a caller that has already initialised a
group (a test using ``init_method="file://..."``) keeps it, and :meth:`Dist.close` leaves it
alone. Model code stays single-device: :meth:`Dist.wrap` puts DDP around it from outside.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ContextManager, Sequence

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from tasks.engine.device import pick_device


@dataclass
class Dist:
    """This process's place in the job: ``rank`` of ``world_size``, and its ``device``."""

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and prints (rank 0)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, batch: Sequence[int]) -> list[int]:
        """This rank's contiguous slice of one global batch (slices are disjoint and cover it)."""
        n = len(batch)
        return list(batch[self.rank * n // self.world_size:(self.rank + 1) * n // self.world_size])

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` inside DDP when several processes train, else ``model`` itself."""
        if not self.active:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def no_sync(self, wrapped: torch.nn.Module, skip: bool) -> ContextManager:
        """Skip DDP's gradient all-reduce for an accumulation micro-batch when ``skip``."""
        if skip and isinstance(wrapped, DistributedDataParallel):
            return wrapped.no_sync()
        return nullcontext()

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (in place; identity in a single process)."""
        if self.active:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        """Leave the process group if :func:`setup` created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup(device_flag: str) -> Dist:
    """Choose the device and join (or reuse) the process group when several processes run."""
    device = pick_device(device_flag, int(os.environ.get("LOCAL_RANK", "0")))
    if dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Dist(0, 1, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return Dist(dist.get_rank(), dist.get_world_size(), device, owns_group=True)
