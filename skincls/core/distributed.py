"""torch.distributed glue for ``torchrun``: process group, rank-0 decisions, gathered predictions.

``torchrun --nproc-per-node N -m skincls train ...`` sets WORLD_SIZE/RANK/LOCAL_RANK; skincls
then uses NCCL on CUDA and gloo on CPU. Nothing here starts processes: torchrun does.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    cpu_group: Any = None
    """A gloo group for small host-side reductions when the main backend is NCCL (None: the
    default group is gloo already, or one process)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistContext:
    """Join the process group torchrun describes in the environment; a no-op for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    cpu_group = dist.new_group(backend="gloo") if backend == "nccl" else None
    return DistContext(True, dist.get_rank(), dist.get_world_size(), local_rank, backend, cpu_group)


def broadcast(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's value of ``obj`` on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_predictions(parts: dict[str, np.ndarray], ctx: DistContext) -> dict[str, np.ndarray]:
    """Concatenate every rank's prediction arrays, ordered by sample index, on every rank."""
    if not ctx.enabled:
        return parts
    everything: list[dict[str, np.ndarray]] = [None] * ctx.world_size  # type: ignore[list-item]
    dist.all_gather_object(everything, parts)
    merged = {
        k: np.concatenate([p[k] for p in everything if p and k in p]) for k in (everything[0] or {})
    }
    if "index" in merged:
        order = np.argsort(merged["index"], kind="stable")
        merged = {k: v[order] for k, v in merged.items()}
    return merged


def all_true_tensor(flag: torch.Tensor, ctx: DistContext) -> bool:
    """True only when the boolean tensor ``flag`` holds on every rank: one collective on the
    flag's device and one host read."""
    if ctx.enabled:
        flag = flag.to(torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag)


def reduce_sum_host(values: list[float], ctx: DistContext) -> list[float]:
    """Sum host numbers over ranks on a CPU (gloo) group: no device synchronisation, even under
    NCCL."""
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, group=ctx.cpu_group)
    return t.tolist()


def reduce_sum(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def no_sync(model: torch.nn.Module, skip: bool):
    """DDP's ``no_sync`` for gradient-accumulation micro-steps; a null context otherwise."""
    if skip and hasattr(model, "no_sync"):
        return model.no_sync()  # type: ignore[operator]
    return nullcontext()


def cleanup(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def merge_dicts(part: dict[str, Any], ctx: DistContext) -> dict[str, Any]:
    """The union of every rank's dict (all ranks get it); ``part`` itself without distribution."""
    if not ctx.enabled:
        return part
    everything: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(everything, part)
    merged: dict[str, Any] = {}
    for d in everything:
        merged.update(d or {})
    return merged


def sync_buffers(model: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank.

    DDP broadcasts buffers at the start of each training forward, so after the last step every
    rank holds the statistics of its own last batch. Validation on each rank's share must use
    the statistics that rank 0 saves in the checkpoint, or the gathered metrics would not be
    those of the saved model.
    """
    if not ctx.enabled:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)
