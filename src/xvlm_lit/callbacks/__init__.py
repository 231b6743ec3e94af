"""Lightning callbacks (and the checkpoint-writing plugin) of xvlm-lit."""

from xvlm_lit.callbacks.atomic_io import AtomicCheckpointIO
from xvlm_lit.callbacks.checkpoint import FinalCheckpoint
from xvlm_lit.callbacks.preemption import PREEMPTED_EXIT_CODE, Preemption
from xvlm_lit.callbacks.progress import ProgressLog, StepProgressBar
from xvlm_lit.callbacks.rng_state import RngState

__all__ = ["PREEMPTED_EXIT_CODE", "AtomicCheckpointIO", "FinalCheckpoint", "Preemption", "ProgressLog", "RngState",
           "StepProgressBar"]
