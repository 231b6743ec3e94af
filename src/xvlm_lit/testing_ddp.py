"""2-rank gloo DDP without ``find_unused_parameters``: PretrainModule steps with and without a region batch."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from xvlm_lit.testing import micro_xvlm, random_batch
from xvlm_lit.testing_dist import build_module

PLUGINS = ["itc", "itm", "mlm", "bbox"]


class StepLoss(nn.Module):
    """DDP calls ``forward``: here the task's total loss of a step batch."""

    def __init__(self, module) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch) -> torch.Tensor:
        return self.module.compute_losses(batch)[0]


def step_batches(rank: int) -> list[dict]:
    """Per-rank step batches: image-text only (box head unused), both streams, image-text only again."""
    model = micro_xvlm(seed=0)
    itc = [random_batch(model, 3, 1, seed=10 * s + rank, regions=False) for s in range(3)]
    region = random_batch(model, 2, 2, seed=50 + rank)
    return [{"itc": itc[0], "region": None}, {"itc": itc[1], "region": region}, {"itc": itc[2], "region": None}]


def worker(rank: int, world: int, init_file: str, out_dir: str, touch: bool) -> None:
    """Three optimizer steps under ``DistributedDataParallel(find_unused_parameters=False)``; saves the parameters
    and, per step, the box head's gradient norm (or the error DDP raised) to ``rank{rank}.pt``."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    out: dict = {"bbox_grad": [], "error": None}
    try:
        module = build_module(PLUGINS)
        module.touch_unused = touch
        ddp = DistributedDataParallel(StepLoss(module), find_unused_parameters=False)
        opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
        for i, batch in enumerate(step_batches(rank)):
            torch.manual_seed(1000 * i + rank)
            try:
                ddp(batch).backward()
            except RuntimeError as err:
                out["error"] = f"step {i}: {err}"
                break
            grad = module.model.bbox_head[0].weight.grad
            out["bbox_grad"].append(None if grad is None else float(grad.norm()))
            opt.step()
            opt.zero_grad(set_to_none=True)
        out["params"] = {n: p.detach().clone() for n, p in module.named_parameters()}
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
