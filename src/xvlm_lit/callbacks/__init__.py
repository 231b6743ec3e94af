"""Lightning callbacks of xvlm-lit."""

from xvlm_lit.callbacks.checkpoint import FinalCheckpoint

__all__ = ["FinalCheckpoint"]
