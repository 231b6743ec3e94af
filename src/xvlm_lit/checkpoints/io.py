"""Safe reading and writing of checkpoint files: ``torch.load(weights_only=True)`` or safetensors, nothing else.

A file whose pickle needs more than tensors and plain containers (a custom class, an OmegaConf config, a function)
is refused with :class:`UnsafeCheckpointError`; it is never unpickled.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file as _st_load
from safetensors.torch import save_file as _st_save

#: globals allowed beyond torch's weights-only defaults: ``argparse.Namespace`` holds plain values only (timm and
#: many training scripts store their ``args`` in checkpoints).
SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)

SAFETENSORS_SUFFIXES = (".safetensors",)


class UnsafeCheckpointError(RuntimeError):
    """The file's pickle needs objects beyond tensors and plain containers; it was not loaded."""


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # not a zip checkpoint, or unreadable: the caller's message still stands
        return []


def is_safetensors(path: str | os.PathLike) -> bool:
    return str(path).endswith(SAFETENSORS_SUFFIXES)


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and the string metadata of a safetensors file (CPU)."""
    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
    return _st_load(str(path)), metadata


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Load a checkpoint file without unpickling arbitrary objects.

    ``.safetensors`` files give ``{"state_dict": tensors, "metadata": {...}}``; anything else goes through
    ``torch.load(weights_only=True)`` (tensors, dicts, lists, numbers, strings, ``argparse.Namespace``).

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the pickle needs other objects; the message names them and the file.
    """
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} is not a file")
    if is_safetensors(path):
        tensors, metadata = read_safetensors(path)
        return {"state_dict": tensors, "metadata": metadata}
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        names = _unsafe_globals(path)
        what = f" It needs: {', '.join(names)}." if names else ""
        raise UnsafeCheckpointError(
            f"refused to load {str(path)!r}: its pickle holds objects beyond tensors and plain containers, and "
            f"xvlm_lit never unpickles arbitrary objects (torch.load weights_only=True).{what} Re-save only the "
            "tensors (e.g. torch.save({'model': state_dict}, ...)) or convert the file to safetensors where you "
            "trust it."
        ) from err


def write_torch(obj: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` of plain containers of tensors (loadable with ``weights_only=True``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(obj), path)
    return path


def write_safetensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike,
                      metadata: Mapping[str, Any] | None = None) -> Path:
    """safetensors file of distinct (untied), contiguous CPU tensors; non-string metadata values become JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    _st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    return path
