"""The Lightning training loop against a bare torch loop over the same module, batches and optimizer."""

from __future__ import annotations

import logging
import statistics
import time
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader

from xvlm_lit.bench_machine import sync
from xvlm_lit.bench_step import StepCase, autocast, build_module, make_batches


class _Repeat(torch.utils.data.Dataset):
    """``n`` items cycling over prepared step batches (no decoding: only the loop is measured)."""

    def __init__(self, batches: list, n: int) -> None:
        self.batches, self.n = batches, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.batches[i % len(self.batches)]


def _loader(batches: list, n: int) -> DataLoader:
    return DataLoader(_Repeat(batches, n), batch_size=None, collate_fn=lambda b: b, num_workers=0)


class _StepClock(L.Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync(str(pl_module.device))
        self.ends.append(time.perf_counter())


def lightning_loop(case: StepCase, steps: int, warmup: int) -> list[float]:
    """Per-step wall seconds (end to end, loader included) of ``Trainer.fit`` with the project's trainer settings."""
    module = build_module(case)
    batches = make_batches(module, case)
    clock = _StepClock()
    accel = "gpu" if case.device.startswith("cuda") else "cpu"
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(accelerator=accel, devices=1, precision=case.precision, max_steps=warmup + steps,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, gradient_clip_val=1.0, gradient_clip_algorithm="norm",
                            num_sanity_val_steps=0, limit_val_batches=0, log_every_n_steps=10, callbacks=[clock])
        try:
            trainer.fit(module, train_dataloaders=_loader(batches, warmup + steps))
        finally:
            lightning_log.setLevel(level)
    return [b - a for a, b in zip(clock.ends[warmup - 1:], clock.ends[warmup:], strict=False)]


def bare_loop(case: StepCase, steps: int, warmup: int) -> list[float]:
    """Per-step wall seconds of the same work in plain torch: clamp, losses, backward, clip, AdamW, lr schedule."""
    module = build_module(case)
    batches = make_batches(module, case)
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    ends = []
    for batch in _loader(batches, warmup + steps):
        with torch.no_grad():
            module.model.temp.clamp_(*module.temp_range)
        with autocast(case):
            total, _ = module.compute_losses(batch)
        total.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        sync(case.device)
        ends.append(time.perf_counter())
    return [b - a for a, b in zip(ends[warmup - 1:], ends[warmup:], strict=False)]


def loop_overhead(case: StepCase, steps: int, warmup: int = 2) -> dict:
    """Median step time of both loops, alternated twice (A B A B) to even out machine load; ratio = L / bare."""
    lit, bare = [], []
    for _ in range(2):
        lit += lightning_loop(case, steps, warmup)
        bare += bare_loop(case, steps, warmup)
    med_l, med_b = statistics.median(lit), statistics.median(bare)
    return {"lightning_step_s": med_l, "bare_step_s": med_b, "overhead_ratio": med_l / med_b,
            "steps_each": len(lit), "target_ratio_max": 1.03}
