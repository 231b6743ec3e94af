"""xvlm-lit: X-VLM multi-grained vision-language pre-training on Lightning + Hydra.

``xvlm_lit.load(path)`` loads a checkpoint for inference (:func:`xvlm_lit.inference.loader.load`,
docs/inference.md); it is imported on first use, so ``import xvlm_lit`` stays light.
"""

from typing import Any

from xvlm_lit.hardware import register_resolvers

__version__ = "0.1.0"

__all__ = ["__version__", "load"]

register_resolvers()  # ${xvlm_precision:...} in conf/trainer resolves wherever a config is composed or re-read


def __getattr__(name: str) -> Any:
    if name == "load":
        from xvlm_lit.inference.loader import load

        return load
    raise AttributeError(f"module 'xvlm_lit' has no attribute {name!r}")
