"""Lightning callbacks of xvlm-lit."""

from xvlm_lit.callbacks.checkpoint import FinalCheckpoint
from xvlm_lit.callbacks.progress import ProgressLog, StepProgressBar

__all__ = ["FinalCheckpoint", "ProgressLog", "StepProgressBar"]
