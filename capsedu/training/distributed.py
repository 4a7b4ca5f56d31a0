"""Data-parallel training across processes (``torchrun --nproc_per_node=N -m capsedu.cli train ...``).

Scheme (exactly equivalent to one process with the same global batch, up to float rounding):

* every rank builds the same data pipeline from the same seed, so all ranks see the same global
  batches (same shuffle, same random shifts); rank ``r`` keeps the ``r``-th contiguous slice
  of each global batch (:meth:`DistContext.shard`);
* the model is wrapped in ``DistributedDataParallel``, which averages gradients over the ranks;
  each rank's loss is scaled by ``world * n_local / n_global`` so the average is the gradient of
  the global-batch mean loss even when the slices differ in size (CapsNet has no batch norm, so
  nothing else depends on the split);
* training and test metrics are summed over the ranks; only rank 0 logs and writes checkpoints,
  and every rank reads the checkpoint on ``--resume``.

The process group comes from the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): NCCL on CUDA, gloo on the CPU. Without those
variables (or with ``WORLD_SIZE=1``) everything here is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["DistContext", "setup", "cleanup", "wrap_model", "unwrap", "env_world_size"]


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass
class DistContext:
    """Where this process stands in a data-parallel run (``world_size == 1``: a normal run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, images: Any, labels: torch.Tensor) -> Tuple[Any, torch.Tensor, float]:
        """This rank's contiguous slice of a global batch and its loss scale.

        ``images`` is a tensor, or a named tuple of tensors with one row per example such as
        :class:`capsedu.data.Pairs`, sliced field by field.

        The scale ``world * n_local / n_global`` makes DDP's gradient average equal the gradient
        of the mean loss over the global batch. A rank whose slice would be empty (a final batch
        smaller than the world) computes on slice 0 with scale 0: it still takes part in the
        gradient all-reduce but adds nothing.
        """
        if not self.enabled:
            return images, labels, 1.0
        n = labels.shape[0]
        pieces_y = torch.tensor_split(labels, self.world_size)
        rank = self.rank if pieces_y[self.rank].shape[0] else 0
        if isinstance(images, torch.Tensor):
            x = torch.tensor_split(images, self.world_size)[rank]
        else:
            x = type(images)(*(torch.tensor_split(t, self.world_size)[rank] for t in images))
        y = pieces_y[rank]
        if rank != self.rank:
            return x, y, 0.0
        return x, y, self.world_size * y.shape[0] / n

    def all_sum(self, values: Sequence[float], device: torch.device) -> List[float]:
        """Sum numbers over the ranks (float64)."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        if self.backend == "nccl" and t.device.type != "cuda":
            t = t.cuda()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().tolist()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def setup(device_name: str = "auto") -> Tuple[DistContext, Optional[torch.device]]:
    """Join the process group described by torchrun's environment variables.

    Returns the context and, for a distributed run, the device this rank should use
    (``cuda:LOCAL_RANK`` on GPUs, else the CPU); ``None`` means "choose as usual".
    """
    world = env_world_size()
    if world <= 1:
        return DistContext(), None
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        owns = True
    ctx = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                      backend=dist.get_backend(), owns_group=owns)
    return ctx, device


def cleanup(ctx: DistContext) -> None:
    """Leave the process group if :func:`setup` created it."""
    if ctx.enabled and ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` for a distributed run, else ``model``.

    DDP broadcasts rank 0's parameters at construction, so all ranks start identical.
    """
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, output_device=ids[0] if ids else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (for checkpoints, evaluation and attribute access)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
