"""All-gather across ranks with an autograd rule, for the contrastive loss."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _AllGather(torch.autograd.Function):
    """Concatenate every rank's ``[B, ...]`` tensor; backward returns this rank's slice of the gradient.

    ``exact=True`` sums the gradient over ranks first. Every rank computes the same global loss, so with DDP's
    gradient averaging this gives exactly the full-batch gradient. ``exact=False`` keeps only the local
    gradient, reproducing the reference X-VLM (its feature gradient is 1/W of the full-batch one).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, exact: bool) -> torch.Tensor:
        rank, size = world()
        ctx.rank, ctx.size, ctx.exact, ctx.local = rank, size, exact, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        if ctx.exact:
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.local
        return grad[start : start + ctx.local], None


def all_gather_with_grad(x: torch.Tensor, exact: bool = True) -> torch.Tensor:
    """``[B, ...]`` on each of W ranks -> ``[W*B, ...]`` (every rank must pass the same B)."""
    _, size = world()
    return x if size == 1 else _AllGather.apply(x, exact)


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` -> ``[W*B, ...]`` without gradient (ids, masks)."""
    _, size = world()
    if size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)
