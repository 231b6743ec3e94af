"""A ``ModelCheckpoint`` whose ``last.ckpt`` is always the model at the end of training."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info


class FinalCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` plus a save when training ends off the ``every_n_train_steps`` grid.

    Lightning writes ``last.ckpt`` only on the save grid (or once, if nothing was ever saved), so a run whose
    ``max_steps`` is not a multiple of ``every_n_train_steps`` would leave the weights of its last grid step
    behind: the 4M recipe would lose its final 4,795 steps. Here ``on_train_end`` saves the final step as a regular
    step checkpoint and as ``last.ckpt`` whenever the last save is older than the final step.
    """

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._final_step_unsaved(trainer):
            candidates = self._monitor_candidates(trainer)
            if self.save_top_k != 0 and self.monitor is None:
                self._save_topk_checkpoint(trainer, candidates)
            if self.save_last:
                self._save_last_checkpoint(trainer, candidates)
            rank_zero_info(f"saved the final step {trainer.global_step} to {self.dirpath}")
        super().on_train_end(trainer, pl_module)

    def _final_step_unsaved(self, trainer: L.Trainer) -> bool:
        return (not trainer.fast_dev_run and not trainer.sanity_checking and trainer.global_step > 0
                and self._last_global_step_saved != trainer.global_step)
