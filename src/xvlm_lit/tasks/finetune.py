"""What every fine-tuning task shares: loss plugins on the task batch, the optimizer groups, a warm-up ratio."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.losses.base import LossPlugin
from xvlm_lit.models.xvlm import XVLM
from xvlm_lit.tasks.optim import REFERENCE_NO_DECAY, build_scheduler, param_groups
from xvlm_lit.tasks.pretrain import PretrainModule


class FineTuneModule(PretrainModule):
    """A task's training step: the configured loss plugins on the task's :class:`VLBatch` (stream ``task``).

    The optimizer is the pre-training one (AdamW, 4 groups, ``new_lr_mult`` for the parts X-VLM adds); the schedule
    warms up over ``warmup_ratio`` of the run, then decays linearly to 0. Subclasses add the evaluation.

    Args:
        model, losses, optimizer: as :class:`~xvlm_lit.tasks.pretrain.PretrainModule`.
        warmup_ratio: fraction of the optimizer steps spent warming up (reference: 0.1).
        clamp_temp: clamp the contrastive temperature into ``temp_range`` before each step (pre-training does).
        max_nonfinite_steps: as :class:`~xvlm_lit.tasks.pretrain.PretrainModule` (non-finite steps are skipped).
    """

    stream = "task"

    def __init__(self, model: XVLM, losses: Mapping[str, LossPlugin], optimizer: Callable[..., torch.optim.Optimizer],
                 warmup_ratio: float = 0.1, new_lr_mult: float = 2.0, clamp_temp: bool = True,
                 temp_range: tuple[float, float] = (0.001, 0.5), no_decay: tuple[str, ...] = REFERENCE_NO_DECAY,
                 total_steps: int | None = None, max_nonfinite_steps: int = 20) -> None:
        super().__init__(model, losses, optimizer, warmup_steps=0, total_steps=total_steps, new_lr_mult=new_lr_mult,
                         temp_range=temp_range, no_decay=no_decay, max_nonfinite_steps=max_nonfinite_steps)
        if not 0 <= warmup_ratio < 1:
            raise ValueError(f"task.warmup_ratio must be in [0, 1), got {warmup_ratio}")
        self.warmup_ratio, self.clamp_temp = warmup_ratio, clamp_temp

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.clamp_temp:
            super().on_train_batch_start(batch, batch_idx)

    def training_step(self, batch: VLBatch | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every item of the batch was unreadable (counted by the dataset)
            return None
        return super().training_step({self.stream: batch}, batch_idx)

    def configure_optimizers(self):
        opt_args = getattr(self.optimizer_factory, "keywords", {})
        lr, wd = opt_args.get("lr", 1e-5), opt_args.get("weight_decay", 0.01)
        groups = param_groups(self.model.named_parameters(), self.model.is_new_parameter, lr, wd,
                              self.new_lr_mult, self.no_decay)
        optimizer = self.optimizer_factory(groups)
        total = self.total_steps or int(self.trainer.estimated_stepping_batches)
        scheduler = build_scheduler(optimizer, round(self.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---------------------------------------------------------------- evaluation plumbing
    def eval_split_name(self, dataloader_idx: int = 0) -> str:
        """The split evaluated by the current validation/test loader."""
        dm = self.trainer.datamodule
        if self.trainer.testing:
            return dm.test_splits[dataloader_idx]
        return dm.val_split
