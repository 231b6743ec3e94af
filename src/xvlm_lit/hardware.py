"""What the machine can do fast: the trainer's default precision (``${xvlm_precision:cpu}`` in conf/trainer)."""

from __future__ import annotations

import os
from functools import cache

from omegaconf import OmegaConf


@cache
def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 matmuls natively on this CPU (AVX512-BF16 or AMX), so bf16 autocast is faster
    than fp32; False on CPUs that would emulate it (slower than fp32)."""
    import torch  # here, not at import: ``import xvlm_lit`` (which registers the resolver) stays light

    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without the probe
        return False


def best_precision(accelerator: str = "cpu") -> str:
    """Lightning ``precision`` for ``accelerator``: ``bf16-mixed`` on a GPU with bf16 and on CPUs with native bf16,
    else ``32-true``. The environment variable ``XVLM_PRECISION`` (e.g. ``32-true``) overrides the choice.

    Raises:
        ValueError: an accelerator other than cpu / gpu / cuda / auto.
    """
    forced = os.environ.get("XVLM_PRECISION")
    if forced:
        return forced
    if accelerator not in ("cpu", "gpu", "cuda", "auto"):
        raise ValueError(f"xvlm_precision: unknown accelerator {accelerator!r}; use cpu, gpu, cuda or auto")
    import torch

    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if not torch.cuda.is_available() or torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def register_resolvers() -> None:
    """Register ``xvlm_precision`` with OmegaConf (idempotent)."""
    if not OmegaConf.has_resolver("xvlm_precision"):
        OmegaConf.register_new_resolver("xvlm_precision", best_precision)
