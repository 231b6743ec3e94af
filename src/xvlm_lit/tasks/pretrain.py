"""Pre-training: sums ``weight * loss`` over whichever loss plugins the config selects."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from torch import nn

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.data.skips import REASONS as SKIP_REASONS
from xvlm_lit.losses.base import LossPlugin, StepCache, zero_touching
from xvlm_lit.models.xvlm import XVLM
from xvlm_lit.tasks.optim import REFERENCE_NO_DECAY, build_scheduler, param_groups

StepBatch = Mapping[str, VLBatch | None]


class PretrainModule(L.LightningModule):
    """X-VLM pre-training step: every stream of the step batch (``itc``: image-text, ``region``: regions or None)
    goes through every plugin; the weighted ``*_loss`` entries are summed into one optimizer step.

    Args:
        model: the network.
        losses: name -> plugin (from ``conf/loss``); the module knows none of them by name.
        optimizer: a partial optimizer (``_partial_: true``) taking param groups.
        warmup_steps, total_steps: linear warm-up then linear decay to 0; ``total_steps=None`` uses the trainer's
            estimate.
        new_lr_mult: lr multiplier of the parts X-VLM adds (cross-attention, projections, temp, heads).
        temp_range: the contrastive temperature is clamped into it before every step.
        max_nonfinite_steps: a step whose total loss is NaN/inf on any rank is skipped on every rank (no update,
            counted as ``train/nonfinite_skipped``); this many skipped in a row stop the run with an error.
    """

    def __init__(self, model: XVLM, losses: Mapping[str, LossPlugin], optimizer: Callable[..., torch.optim.Optimizer],
                 warmup_steps: int = 2500, total_steps: int | None = None, new_lr_mult: float = 2.0,
                 temp_range: tuple[float, float] = (0.001, 0.5),
                 no_decay: tuple[str, ...] = REFERENCE_NO_DECAY, max_nonfinite_steps: int = 20) -> None:
        super().__init__()
        if int(max_nonfinite_steps) < 1:
            raise ValueError(f"task.max_nonfinite_steps must be >= 1, got {max_nonfinite_steps}")
        if not losses:
            raise ValueError("no loss selected: choose at least one of conf/loss (e.g. loss=[itc,itm,mlm,bbox])")
        self.model = model
        self.losses = nn.ModuleDict(dict(losses))
        self.optimizer_factory = optimizer
        self.warmup_steps, self.total_steps = int(warmup_steps), total_steps
        self.new_lr_mult, self.temp_range, self.no_decay = new_lr_mult, tuple(temp_range), tuple(no_decay)
        self._skips = torch.zeros(len(SKIP_REASONS) + 1, dtype=torch.float64)
        self.max_nonfinite_steps = int(max_nonfinite_steps)
        self.nonfinite_skipped = 0  # steps skipped for a non-finite loss, this run
        self._nonfinite_in_a_row = 0
        self._skip_optimizer_step = False
        #: connect unused parameters with a zero term (None = when DDP runs without find_unused_parameters)
        self.touch_unused: bool | None = None
        self._unused_cache: dict[tuple[str, ...], list[nn.Parameter]] = {}

    def compute_losses(self, batch: StepBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total weighted loss and every logged term (``<stream>/<key>`` and per-key sums over streams)."""
        total: torch.Tensor | None = None
        logs: dict[str, torch.Tensor] = {}
        for stream, sub in batch.items():
            if not isinstance(sub, VLBatch):  # None (no region batch this step) or the "skipped" counters
                continue
            cache = StepCache(self.model, sub)
            for plugin in self.losses.values():
                for key, value in plugin(self.model, sub, cache).items():
                    logs[f"{stream}/{key}"] = value.detach()
                    if key.endswith("_loss"):
                        term = plugin.weight * value
                        total = term if total is None else total + term
                        logs[key] = logs.get(key, 0.0) + value.detach()
        if total is None:
            raise RuntimeError("no loss plugin produced a loss for this batch: check conf/loss and the data streams")
        logs["loss"] = total.detach()
        if torch.is_grad_enabled() and self._needs_touch():
            total = total + self._touch_unused(total, tuple(logs))
        return total, logs

    def _needs_touch(self) -> bool:
        """``touch_unused`` when set, else True under a multi-process DDP strategy without find_unused_parameters."""
        if self.touch_unused is not None:
            return self.touch_unused
        trainer = self._trainer
        if trainer is None or not isinstance(trainer.strategy, DDPStrategy) or trainer.world_size < 2:
            return False
        return not trainer.strategy._ddp_kwargs.get("find_unused_parameters", False)

    def _touch_unused(self, total: torch.Tensor, signature: tuple[str, ...]) -> torch.Tensor:
        """A zero connected to every trainable parameter ``total`` does not reach (the box head on a step without
        a region batch), so DDP runs without ``find_unused_parameters``. The unused set depends only on which
        plugin outputs the step produced (``signature``): the graph is walked once per signature."""
        unused = self._unused_cache.get(signature)
        if unused is None:
            reached = _graph_parameters(total)
            unused = [p for p in self.parameters() if p.requires_grad and id(p) not in reached]
            self._unused_cache[signature] = unused
        if not unused:
            return total.new_zeros(())
        return torch.stack([p.sum() for p in unused]).sum().to(total.dtype) * 0.0

    def on_train_batch_start(self, batch: StepBatch, batch_idx: int) -> None:
        with torch.no_grad():
            self.model.temp.clamp_(*self.temp_range)

    def training_step(self, batch: StepBatch, batch_idx: int) -> torch.Tensor:
        total, logs = self.compute_losses(batch)
        size = batch_size_of(batch)
        skip = self._any_rank_nonfinite(total)
        if skip:
            self._on_nonfinite(logs)
        else:
            self._nonfinite_in_a_row = 0
            loss = logs.pop("loss")
            if self._logs_this_step():
                self.log_dict({f"train/{k}": v for k, v in logs.items()}, batch_size=size)
            self.log("train/loss", loss, batch_size=size, prog_bar=True)
        self.log("train/nonfinite_skipped", float(self.nonfinite_skipped), batch_size=size)
        self._count_skips(batch.get("skipped") or {})
        self._skip_optimizer_step = skip
        # Lightning refuses a None loss under DDP: a skipped step back-propagates an exact zero through every
        # parameter (DDP's gradient sync stays complete) and optimizer_step below does not step
        return zero_touching(self) if skip else total

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        """Run the step's closure (training_step + backward) first, then step the optimizer (with the trainer's
        gradient clipping) unless the step's loss was non-finite on some rank: no update, no AdamW moment or
        weight-decay change. The scheduler and ``global_step`` still advance."""
        if optimizer_closure is None:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        loss = optimizer_closure()
        if self._skip_optimizer_step:
            return None
        return optimizer.step(closure=lambda: loss)

    def _logs_this_step(self) -> bool:
        """Whether the per-term values are logged this step: on the steps Lightning writes to the loggers (every
        ``log_every_n_steps``) and on the last step (the run's final metrics), not on the others, where Lightning
        would only discard them; ~20 ``self.log`` calls cost 2% of the tiny CPU step. ``train/loss`` (progress bar)
        is logged every step."""
        trainer = self._trainer
        if trainer is None:
            return True
        last = trainer.max_steps is not None and trainer.max_steps > 0 and self.global_step + 1 >= trainer.max_steps
        return last or bool(getattr(trainer._logger_connector, "should_update_logs", True))

    def _any_rank_nonfinite(self, total: torch.Tensor) -> bool:
        """Whether the total loss is NaN/inf on any rank: one all-reduce of one number and one host sync per
        step, so every rank takes the same decision (a rank skipping alone would hang DDP's gradient sync)."""
        bad = (~torch.isfinite(total.detach())).to(torch.float32).reshape(1)
        return bool(self.trainer.strategy.reduce(bad, reduce_op="sum").item() > 0)

    def _on_nonfinite(self, logs: Mapping[str, torch.Tensor]) -> None:
        """Count a skipped step; after ``max_nonfinite_steps`` in a row stop with the step and this rank's terms."""
        self.nonfinite_skipped += 1
        self._nonfinite_in_a_row += 1
        if self._nonfinite_in_a_row >= self.max_nonfinite_steps:
            terms = ", ".join(f"{k}={float(v):.6g}" for k, v in logs.items() if k == "loss" or k.endswith("_loss"))
            raise RuntimeError(
                f"step {self.global_step}: the total loss was non-finite (NaN/inf) on {self._nonfinite_in_a_row} "
                f"steps in a row (task.max_nonfinite_steps={self.max_nonfinite_steps}); those steps were skipped. "
                f"Loss terms of this step on rank {self.global_rank}: {terms}. Lower the learning rate, check "
                "the data, or resume from an earlier checkpoint.")

    def _count_skips(self, counts: Mapping[str, int]) -> None:
        """Accumulate the data pipeline's skipped-sample counts; every ``log_every_n_steps`` log the run's totals
        summed over all ranks as ``train/skipped/<reason>`` (one collective on a fixed-size vector)."""
        for reason, n in counts.items():
            i = SKIP_REASONS.index(reason) if reason in SKIP_REASONS else len(SKIP_REASONS)
            self._skips[i] += n
        every = max(1, getattr(self.trainer, "log_every_n_steps", 50))
        if self.global_step % every == 0:
            totals = self.trainer.strategy.reduce(self._skips.to(self.device), reduce_op="sum")
            names = (*SKIP_REASONS, "other")
            self.log_dict({f"train/skipped/{r}": float(v) for r, v in zip(names, totals.tolist(), strict=True)},
                          rank_zero_only=True)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip here when no gradient scaler is involved (fp32, bf16-mixed): Lightning's mixed-precision plugin refuses
        to clip for any optimizer that could unscale gradients itself (fused AdamW), although without a scaler there
        is nothing to unscale and clipping before the fused step is exact. fp16 (a scaler) and sharded strategies
        keep Lightning's own path."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        sharded = not isinstance(self.trainer.strategy, (DDPStrategy, SingleDeviceStrategy))
        if not gradient_clip_val or scaler is not None or sharded:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        elif gradient_clip_algorithm in (None, "norm"):
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_value_(self.parameters(), gradient_clip_val)

    def validation_step(self, batch: StepBatch, batch_idx: int) -> None:
        _, logs = self.compute_losses(batch)
        self.log_dict({f"val/{k}": v for k, v in logs.items()}, batch_size=batch_size_of(batch), sync_dist=True)

    def configure_optimizers(self):
        opt_args = getattr(self.optimizer_factory, "keywords", {})
        lr, wd = opt_args.get("lr", 1e-4), opt_args.get("weight_decay", 0.01)
        groups = param_groups(self.model.named_parameters(), self.model.is_new_parameter, lr, wd,
                              self.new_lr_mult, self.no_decay)
        optimizer = self.optimizer_factory(groups)
        total = self.total_steps or int(self.trainer.estimated_stepping_batches)
        scheduler = build_scheduler(optimizer, self.warmup_steps, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _graph_parameters(out: torch.Tensor) -> set[int]:
    """``id`` of every leaf tensor (parameter) the autograd graph of ``out`` accumulates a gradient into."""
    seen, found, stack = set(), set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold their leaf
        if variable is not None:
            found.add(id(variable))
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return found


def batch_size_of(batch: StepBatch | VLBatch | None) -> int:
    """Number of texts in the step (all streams; a fine-tuning step has one :class:`VLBatch`)."""
    if isinstance(batch, VLBatch):
        return batch.num_texts
    if isinstance(batch, Mapping) and "text_ids" in batch:  # a grounding evaluation batch
        return int(batch["text_ids"].shape[0])
    if isinstance(batch, Mapping):
        return sum(sub.num_texts for sub in batch.values() if isinstance(sub, VLBatch))
    return 1  # None, or a retrieval evaluation step (it reads its split itself): counted as one
