"""Training progress a person can follow: a rich bar counting steps (the streams have no epochs) in a terminal,
and one log line every N steps elsewhere (CI, ``| tee``, SLURM logs, Hydra's ``train.log``)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, RichProgressBar

from xvlm_lit.utils.progress import format_duration, is_terminal

log = logging.getLogger("xvlm_lit.progress")

WHEN = ("no_tty", "always", "never")


def counts_steps(trainer: L.Trainer) -> bool:
    """True when training is bounded by ``max_steps`` only (``max_epochs=-1``: an endless stream)."""
    return trainer.max_epochs in (None, -1) and trainer.max_steps is not None and trainer.max_steps > 0


def total_steps(trainer: L.Trainer) -> int | None:
    """The step count the run ends at, or None when it cannot be known (epochs of a stream without a length)."""
    if trainer.max_steps is not None and trainer.max_steps > 0:
        return int(trainer.max_steps)
    batches = trainer.num_training_batches
    if trainer.max_epochs and trainer.max_epochs > 0 and math.isfinite(batches):
        return int(trainer.max_epochs * batches // max(trainer.accumulate_grad_batches, 1))
    return None


class StepProgressBar(RichProgressBar):
    """Lightning's rich bar showing ``global_step/max_steps`` when the run is bounded by steps (our streams have no
    length, so the stock bar reads ``Epoch 0/-2`` and counts batches of the current epoch). Bounded by epochs, it is
    the stock bar."""

    @property
    def total_train_batches(self) -> int | float:
        if counts_steps(self.trainer):
            return int(self.trainer.max_steps)
        return super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        if counts_steps(self.trainer):
            return f"{'Train steps':{len(self.validation_description)}}"
        return super()._get_train_description(current_epoch)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if counts_steps(trainer):
            batch_idx = trainer.global_step - 1  # the parent shows batch_idx + 1 as completed
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def progress_bar_callbacks(enabled: bool, when: str = "tty") -> list[Callback]:
    """The progress bar to add to the trainer: :class:`StepProgressBar` when ``enabled`` and stdout is a terminal
    (``when="always"``: even without one), else none (then :class:`ProgressLog` reports)."""
    return [StepProgressBar()] if enabled and (when == "always" or is_terminal()) else []


class ProgressLog(Callback):
    """One log line every ``every_n_steps`` optimizer steps (and at the last step) on rank 0::

        step 50/650 (8%) | loss 3.214 | 41.2 samples/s | elapsed 0:01:10 | ETA 0:14:00

    Args:
        every_n_steps: interval; 0 switches the lines off.
        when: ``no_tty`` (default: only when stdout is not a terminal, where the rich bar is shown instead),
            ``always`` or ``never``.
        batch_size_fn: samples in a batch (e.g. :func:`xvlm_lit.tasks.pretrain.batch_size_of`); None: 1 per batch.
        loss_key: the logged metric shown when the step output carries no ``loss``.
    """

    def __init__(self, every_n_steps: int = 50, when: str = "no_tty",
                 batch_size_fn: Callable[[Any], int] | None = None, loss_key: str = "train/loss") -> None:
        if when not in WHEN:
            raise ValueError(f"callbacks.progress_log.when={when!r}: choose one of {WHEN}")
        if every_n_steps < 0:
            raise ValueError(f"callbacks.progress_log.every_n_steps={every_n_steps}: must be >= 0 (0 = off)")
        self.every_n_steps, self.when, self.loss_key = int(every_n_steps), when, loss_key
        self.batch_size_fn = batch_size_fn
        self._start = self._window_start = 0.0
        self._first_step = self._last_logged = 0
        self._window_samples = 0

    @property
    def active(self) -> bool:
        if self.every_n_steps == 0 or self.when == "never":
            return False
        return self.when == "always" or not is_terminal()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._window_start = time.monotonic()
        self._first_step = self._last_logged = trainer.global_step
        self._window_samples = 0
        if self.active and trainer.is_global_zero:
            total = total_steps(trainer)
            log.info("training from step %d to %s, a progress line every %d steps", trainer.global_step,
                     total if total is not None else "the end of the data", self.every_n_steps)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.active or not trainer.is_global_zero:
            return
        self._window_samples += self.batch_size_fn(batch) if self.batch_size_fn is not None else 1
        step, total = trainer.global_step, total_steps(trainer)
        if step == self._last_logged or (step % self.every_n_steps and step != total):
            return
        log.info(self.line(step, total, self._loss(trainer, outputs)))
        self._last_logged, self._window_samples, self._window_start = step, 0, time.monotonic()

    def line(self, step: int, total: int | None, loss: float | None) -> str:
        """The progress line at ``step`` (rates measured since the previous line; ETA from the whole run)."""
        now = time.monotonic()
        elapsed, window = now - self._start, now - self._window_start
        done = step - self._first_step
        parts = [f"step {step}/{total} ({100 * step / total:.0f}%)" if total else f"step {step}"]
        parts.append(f"loss {loss:.4f}" if loss is not None else "loss ?")
        parts.append(f"{self._window_samples / window:.1f} samples/s" if window > 0 else "? samples/s")
        parts.append(f"elapsed {format_duration(elapsed)}")
        eta = (total - step) * elapsed / done if total and done > 0 else float("nan")
        parts.append(f"ETA {format_duration(eta)}")
        return " | ".join(parts)

    def _loss(self, trainer: L.Trainer, outputs: Any) -> float | None:
        value = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(value, torch.Tensor):
            value = trainer.callback_metrics.get(self.loss_key)
        return float(value) if isinstance(value, torch.Tensor) and value.numel() == 1 else None
