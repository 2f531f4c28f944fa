"""Data-parallel plumbing for the trainer (single process, DDP or FSDP2).

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :func:`setup` joins the process
group (NCCL on GPUs, gloo on CPUs) with ``env://``; a caller that has already initialised a
group (a test using ``init_method="file://..."``) keeps it, and :meth:`Dist.close` leaves it
alone. Model code stays single-device: :meth:`Dist.wrap` puts DDP around it from outside, or
(``--strategy fsdp2``) shards it in place with :func:`shard_model`: ``fully_shard`` on every
transformer block, then on the root, so each rank holds 1/N of the parameters, gradients
and optimizer state and all-gathers one block at a time.
"""
from __future__ import annotations

import os
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ContextManager, Iterable, Sequence

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import get_total_norm

from tasks.engine.device import pick_device
from tasks.engine.flags import STRATEGIES
from zoo.errors import ZooError
from zoo.layers.block import Block


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

    def wrap(self, model: torch.nn.Module, strategy: str = "ddp") -> torch.nn.Module:
        """``model`` inside DDP, or sharded in place by FSDP2 (``strategy`` "fsdp2"), when several
        processes train; else ``model`` itself. Build the optimizer after this (FSDP2 replaces the
        parameters by their shards)."""
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy {strategy!r}: expected one of {STRATEGIES}")
        if not self.active:
            return model
        if strategy == "fsdp2":
            return shard_model(model, self.device)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def grad_norm(self, params: Iterable[torch.Tensor]) -> torch.Tensor:
        """The 2-norm of the gradients of ``params`` (a plain tensor on this rank's device); for
        sharded parameters the norm of the whole gradient, the same on every rank."""
        norm = get_total_norm([p.grad for p in params if p.grad is not None])
        return (norm.full_tensor() if isinstance(norm, DTensor) else norm).to(self.device)

    def no_sync(self, wrapped: torch.nn.Module, skip: bool) -> ContextManager:
        """Skip DDP's gradient all-reduce for an accumulation micro-batch when ``skip``."""
        return wrapped.no_sync() if skip and isinstance(wrapped, DistributedDataParallel) else nullcontext()

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

    def barrier(self) -> None:
        """Wait until every rank is here (nothing in a single process)."""
        if self.active:
            dist.barrier()

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


def is_sharded(model: torch.nn.Module) -> bool:
    """True for a model :func:`shard_model` sharded (its parameters are DTensor shards)."""
    return isinstance(model, FSDPModule)


def check_strategy(args: Any) -> None:
    """Refuse, before any work, the flags ``--strategy fsdp2`` cannot honour in a multi-process job."""
    if args.strategy != "fsdp2":
        return
    reasons = {"--ema": (args.ema, "it averages the whole weights on rank 0"),
               "--lora": (args.lora, "it saves its adapters from the whole weights")}
    for flag, (value, reason) in reasons.items():
        if value is not None:
            raise ZooError(f"{flag} does not work with --strategy fsdp2 ({reason}, which no rank holds); "
                           f"drop {flag} or train with --strategy ddp")


def precision_policy(device: torch.device) -> MixedPrecisionPolicy:
    """FSDP2's mixed precision: on GPUs the gathered parameters (the compute) are bf16 and the
    gradients are reduced in fp32 (the shards and the optimizer stay fp32); elsewhere all fp32."""
    if device.type == "cuda":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Shard ``model`` in place over every rank of the process group (FSDP2) and return it.

    Each transformer block (:class:`zoo.layers.block.Block`) is one unit, all-gathered for its
    forward and backward and freed after; the rest (embeddings, norms, the head) is the root
    unit, gathered by ``forward`` and by ``generate``. A block's cross-attention is a unit of its
    own whose ``project_context`` (called by a decoder before the blocks run) gathers its weights too. Every rank starts from rank 0's
    weights (as DDP does); the shards move to ``device``.
    """
    with torch.no_grad():
        for tensor in model.state_dict().values():
            staged = tensor.to(device)                  # NCCL broadcasts device tensors only
            dist.broadcast(staged, src=0)
            if staged is not tensor:
                tensor.copy_(staged)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = precision_policy(device)
    for block in [m for m in model.modules() if isinstance(m, Block)]:
        cross = getattr(block, "cross_attn", None)
        if cross is not None:
            fully_shard(cross, mesh=mesh, mp_policy=policy)
            register_fsdp_forward_method(cross, "project_context")
            # its keys and values are two views of one projection, which nothing writes into:
            # FSDP's warning about in-place writes to a returned view does not apply
            warnings.filterwarnings("ignore", r"FSDP2-wrapped module \(FSDPAttention\) returned a view")
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    if callable(getattr(model, "generate", None)):    # it runs the backbone and head without forward()
        register_fsdp_forward_method(model, "generate")
    return model
