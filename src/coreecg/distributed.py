"""Process-group plumbing for ``torchrun``: who am I, gather with gradient, rank-0-only side effects.

``coreecg pretrain`` behaves the same in one process and under ``torchrun``; these helpers are the
only place that asks which. NCCL is used on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_from_environment(use_cuda: bool) -> Context:
    """Join the process group ``torchrun`` describes in the environment; a plain run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Context()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return Context(rank=rank, world_size=world, local_rank=local)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
    _forget_side_group()


def world() -> tuple[int, int]:
    """(rank, world size) of the current process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


_SIDE_GROUP = None


def side_group():
    """A second process group for the objective's own collectives.

    DDP all-reduces gradient buckets asynchronously on the default group while backward runs. The
    gather's gradient is a collective issued from inside backward; on its own group it can never be
    paired with a bucket of another rank, whatever order the ranks reach them in.
    """
    global _SIDE_GROUP
    if _SIDE_GROUP is None:
        _SIDE_GROUP = dist.new_group(backend=dist.get_backend())
    return _SIDE_GROUP


def _forget_side_group() -> None:
    global _SIDE_GROUP
    _SIDE_GROUP = None


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends every rank's gradient for a slice back to the rank that owns it.

    ``dist.all_gather`` alone is not differentiable: the gathered copies of other ranks' embeddings
    would get no gradient and DDP would silently train on half a loss (a known bug class).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous(), group=side_group())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=side_group())
        rank, size = dist.get_rank(), dist.get_world_size()
        return grad.chunk(size, dim=0)[rank]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank (rank order), differentiably; identity without a process group."""
    _, size = world()
    return x if size == 1 else _GatherWithGrad.apply(x)


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (for logging); identity without a process group."""
    _, size = world()
    if size == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM, group=side_group())
    return value / size
