"""``AtomicCheckpointIO``: a checkpoint file is either the old one or the complete new one, never half of either.

Lightning's ``TorchCheckpointIO`` opens the target for writing and streams into it, so a process killed during the
save (SIGKILL, out of memory, the node going away) leaves a truncated ``last.ckpt`` and nothing to resume from. Here
the bytes go to a temporary file in the same folder, are flushed to disk, and ``os.replace`` swaps it in (atomic on
POSIX within one file system). Remote paths (``s3://`` ...) fall back to Lightning's writer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

TMP_MARK = ".tmp-"


def temp_path(path: Path) -> Path:
    """The hidden sibling a save of ``path`` writes first (``.NAME.tmp-PID``; never matches ``*.ckpt``)."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through a temporary file + fsync + ``os.replace``; leftovers of earlier
    interrupted saves of ``path`` are removed once the new file is in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    for stale in path.parent.glob(f".{path.name}{TMP_MARK}*"):
        stale.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (best effort: not every file system lets a folder be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic (see the module docstring). Use it as a Trainer plugin:
    ``plugins: [{_target_: xvlm_lit.callbacks.atomic_io.AtomicCheckpointIO}]``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)
