"""The Hydra config a checkpoint was trained with, found beside it in its run directory."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

RUN_CONFIG = Path(".hydra") / "config.yaml"


def run_config_path(ckpt: str | os.PathLike) -> Path | None:
    """``<run>/.hydra/config.yaml`` for ``<run>/checkpoints/<file>`` (or ``<run>/<file>``), if it exists."""
    ckpt = Path(ckpt).resolve()
    for run_dir in (ckpt.parent.parent, ckpt.parent):
        if (run_dir / RUN_CONFIG).is_file():
            return run_dir / RUN_CONFIG
    return None


def load_run_config(ckpt: str | os.PathLike) -> DictConfig | None:
    """The (unresolved) training config saved next to ``ckpt`` by Hydra, or None when there is none."""
    path = run_config_path(ckpt)
    return OmegaConf.load(path) if path is not None else None
