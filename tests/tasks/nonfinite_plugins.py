"""Helpers of test_nonfinite.py, importable by ddp_spawn children: a NaN-injecting loss plugin, the step data,
and a callback that snapshots weights and optimizer steps after every training batch."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist

from xvlm_lit.losses.base import LossPlugin, zero_touching
from xvlm_lit.losses.itc import ITCLoss
from xvlm_lit.losses.mlm import MLMLoss
from xvlm_lit.tasks.pretrain import PretrainModule
from xvlm_lit.testing import micro_xvlm, random_batch


class NaNOnCalls(LossPlugin):
    """``spike_loss``: 0, or NaN on the listed calls (0-based, one call per step) and ranks (None = every rank)."""

    name = "spike"

    def __init__(self, nan_calls: set[int], ranks: set[int] | None = None) -> None:
        super().__init__(1.0)
        self.nan_calls, self.ranks, self.calls = set(nan_calls), ranks, 0

    def forward(self, model, batch, cache):
        rank = dist.get_rank() if dist.is_initialized() else 0
        bad = self.calls in self.nan_calls and (self.ranks is None or rank in self.ranks)
        self.calls += 1
        # touches every parameter, so DDP (find_unused_parameters=False) sees each one used
        return {"spike_loss": zero_touching(model) + (float("nan") if bad else 0.0)}


def build(nan_calls: set[int], ranks: set[int] | None = None, max_nonfinite_steps: int = 20) -> PretrainModule:
    losses = {"itc": ITCLoss(), "mlm": MLMLoss(), "spike": NaNOnCalls(nan_calls, ranks)}
    return PretrainModule(micro_xvlm(seed=0), losses, partial(torch.optim.AdamW, lr=1e-3), warmup_steps=0,
                          total_steps=100, max_nonfinite_steps=max_nonfinite_steps)


def first_item(items: list):
    return items[0]


def loader(steps: int, same: bool = False) -> torch.utils.data.DataLoader:
    """``steps`` step batches (a distributed sampler deals them out to the ranks); ``same``: one batch repeated."""
    model = micro_xvlm(seed=0)
    data = [{"itc": random_batch(model, 3, regions=False, seed=0 if same else s)} for s in range(steps)]
    return torch.utils.data.DataLoader(data, batch_size=1, collate_fn=first_item, shuffle=False)


class Snapshots(L.Callback):
    """After every training batch: the flat parameter vector and the AdamW step of the first parameter."""

    def __init__(self, out_dir: str | None = None) -> None:
        self.out_dir, self.weights, self.adam_steps = out_dir, [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        params = list(pl_module.model.parameters())
        self.weights.append(torch.cat([p.detach().flatten() for p in params]).clone())
        state = trainer.optimizers[0].state.get(params[0], {})
        self.adam_steps.append(int(state["step"]) if "step" in state else 0)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.out_dir is not None:
            torch.save({"weights": self.weights, "adam_steps": self.adam_steps,
                        "skipped": pl_module.nonfinite_skipped,
                        "logged": float(trainer.callback_metrics["train/nonfinite_skipped"])},
                       Path(self.out_dir) / f"rank{trainer.global_rank}.pt")


def trainer(steps: int, callbacks, **kwargs) -> L.Trainer:
    """A quiet CPU trainer with gradient clipping; ``kwargs`` override the defaults."""
    options = dict(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0, log_every_n_steps=1)
    return L.Trainer(callbacks=callbacks, **(options | kwargs))
