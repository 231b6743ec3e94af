"""``Preemption``: SIGTERM / SIGUSR1 -> ``last.ckpt`` at the next step boundary, SLURM requeue, orderly exit.

Lightning already turns SIGTERM into a flag that stops training at the next step boundary (``SIGTERMException``).
This callback

- routes SIGUSR1 (SLURM's usual ``--signal=USR1@90`` warning; under SLURM the environment's ``requeue_signal``)
  into the same flag, set at the end of a training step on every rank at once (one boolean all-reduce per step
  when there are several ranks), so all ranks stop after the same step. Lightning's own SLURM handler would save
  at once, from inside the signal handler, in the middle of a step: this callback replaces it and calls it at
  the step boundary instead;
- saves ``<checkpoint dir>/last.ckpt`` at that boundary: the step reached, with the data stream position and
  random generators, so ``ckpt_path=.../last.ckpt`` continues exactly as if nothing had happened;
- under SLURM with ``auto_requeue`` (Lightning's ``SLURMEnvironment``, auto-detected), after the requeue signal,
  lets Lightning save its ``hpc_ckpt_N.ckpt`` in ``default_root_dir`` and run ``scontrol requeue <job id>``; the
  requeued job, started with the same run directory and no ``ckpt_path``, resumes from it by itself.

The process then exits with :data:`PREEMPTED_EXIT_CODE` (``xvlm_lit.train``), so a ``train && evaluate`` script
stops instead of evaluating a half-trained model.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, the shell's code for a job ended by SIGTERM


def slurm_requeue_signal(trainer: L.Trainer) -> signal.Signals | None:
    """The requeue signal when the trainer runs under SLURM with auto-requeue, else None."""
    env = trainer._accelerator_connector.cluster_environment
    if isinstance(env, SLURMEnvironment) and env.auto_requeue and env.requeue_signal is not None:
        return signal.Signals(env.requeue_signal)
    return None


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """``last.ckpt`` in the ModelCheckpoint's folder (``<default_root_dir>/checkpoints`` without one)."""
    ckpt = trainer.checkpoint_callback
    folder = ckpt.dirpath if isinstance(ckpt, ModelCheckpoint) and ckpt.dirpath else None
    name = (ckpt.CHECKPOINT_NAME_LAST if isinstance(ckpt, ModelCheckpoint) else "last") + ".ckpt"
    return Path(folder or Path(trainer.default_root_dir) / "checkpoints") / name


def _as_next_epoch_start(trainer: L.Trainer) -> None:
    """A stop on an epoch's last step is raised after Lightning has closed the epoch but before it resets the
    epoch's batch counters; restored as they are, they would cut the next epoch short. Save the state of the next
    epoch's start instead (what Lightning itself has there a moment later)."""
    batches = trainer.fit_loop.epoch_loop.batch_progress
    if batches.current.ready >= trainer.num_training_batches:
        batches.reset_on_run()


class Preemption(Callback):
    """Checkpoint (and requeue) on preemption signals; see the module docstring.

    Args:
        signals: extra signals that stop training like SIGTERM does (names such as ``"SIGUSR1"``); SIGTERM itself is
            Lightning's. Under SLURM the environment's requeue signal is always one of them.
    """

    def __init__(self, signals: tuple[str, ...] | list[str] = ("SIGUSR1",)) -> None:
        self.signals = [signal.Signals[name] if isinstance(name, str) else signal.Signals(name) for name in signals]
        self.received: signal.Signals | None = None
        self.saved: Path | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning registered its handlers before this hook; ours replace them for these signals only
        self.received, self.saved = None, None
        wanted = set(self.signals)
        if (requeue := slurm_requeue_signal(trainer)) is not None:
            wanted.add(requeue)
        if threading.current_thread() is threading.main_thread():
            for signum in sorted(wanted):
                signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """Only records the signal: ranks agree on the stop step in ``on_train_batch_end``."""
        self.received = signal.Signals(signum)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Stop after this step when any rank got one of our signals: every rank sets Lightning's SIGTERM flag at
        the same step, so all raise ``SIGTERMException`` at this step's end and save together."""
        stop = self.received is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            if self.received is None:  # another rank got it
                self.received = slurm_requeue_signal(trainer) or (self.signals[0] if self.signals else None)
            trainer._signal_connector.received_sigterm = True

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        path = last_checkpoint_path(trainer)
        _as_next_epoch_start(trainer)
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, ModelCheckpoint) and ckpt.save_last:
            # claim the file for the ModelCheckpoint (its state is saved inside): resumed, it keeps writing
            # last.ckpt instead of a versioned last-v1.ckpt next to it
            ckpt.last_model_path = str(path)
        trainer.save_checkpoint(path)
        self.saved = path
        name = self.received.name if self.received is not None else "SIGTERM"
        rank_zero_info(f"{name}: saved step {trainer.global_step} to {path}; resume with ckpt_path={path}")
        requeue = slurm_requeue_signal(trainer)
        if requeue is not None and self.received == requeue:
            # Lightning's SLURM handler, now at a step boundary: hpc_ckpt_N.ckpt + `scontrol requeue <job id>`
            trainer._signal_connector._slurm_sigusr_handler_fn(requeue, None)
