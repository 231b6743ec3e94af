"""xvlm-lit: X-VLM multi-grained vision-language pre-training on Lightning + Hydra.

``xvlm_lit.load(path)`` loads a checkpoint for inference (:mod:`xvlm_lit.inference`, docs/inference.md).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(*args, **kwargs):
    """:func:`xvlm_lit.inference.load` (imported on first use, so ``import xvlm_lit`` stays light)."""
    from xvlm_lit.inference import load as _load

    return _load(*args, **kwargs)


load.__doc__ = "Load a checkpoint for inference; see :func:`xvlm_lit.inference.loader.load`."
