"""Multi-process (gloo) checks used by the test-suite: each rank runs one PretrainModule step."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist

from xvlm_lit.losses.bbox import BBoxLoss
from xvlm_lit.losses.itc import ITCLoss
from xvlm_lit.losses.itm import ITMLoss
from xvlm_lit.losses.mlm import MLMLoss
from xvlm_lit.tasks.pretrain import PretrainModule
from xvlm_lit.testing import micro_xvlm, random_batch

PLUGINS = {"itc": ITCLoss, "itm": ITMLoss, "mlm": MLMLoss, "bbox": BBoxLoss}


def build_module(plugins: list[str], exact: bool = True) -> PretrainModule:
    """The same seeded micro model on every rank, with the named plugins."""
    losses = {n: (PLUGINS[n](exact_gradient=exact) if n == "itc" else PLUGINS[n]()) for n in plugins}
    return PretrainModule(micro_xvlm(seed=0), losses, partial(torch.optim.AdamW, lr=1e-4))


def rank_batches(world: int, images_per_rank: int = 3, texts_per_image: int = 2):
    """The per-rank batches of one global step (rank r gets the r-th)."""
    model = micro_xvlm(seed=0)
    return [random_batch(model, images_per_rank, texts_per_image, seed=100 + r) for r in range(world)]


def step_outputs(module: PretrainModule, batch, stream: str = "region") -> dict:
    """Loss logs and parameter gradients of one step on ``batch``."""
    torch.manual_seed(1234 + (dist.get_rank() if dist.is_initialized() else 0))
    total, logs = module.compute_losses({stream: batch})
    total.backward()
    grads = {n: p.grad.detach().clone() for n, p in module.model.named_parameters() if p.grad is not None}
    return {"logs": {k: float(v) for k, v in logs.items()}, "grads": grads}


def worker(rank: int, world: int, init_file: str, out_dir: str, plugins: list[str], exact: bool) -> None:
    """Entry of ``torch.multiprocessing.spawn``: one rank's step, gradients averaged as DDP does (``grads``; the
    rank's own are kept as ``local_grads``), saved to disk."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        module = build_module(plugins, exact)
        out = step_outputs(module, rank_batches(world)[rank])
        out["local_grads"] = {n: g.clone() for n, g in out["grads"].items()}  # before the DDP-style average
        for g in out["grads"].values():
            dist.all_reduce(g)
            g /= world
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
