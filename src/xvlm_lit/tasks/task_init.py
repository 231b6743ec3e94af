"""Initialising a task model through a task key map when a fit starts (``task.init_from``).

``model.init_from`` is read when the model is built, every time; ``task.init_from`` is read through the task's
key map in ``on_fit_start``, once Lightning has restored a resumed run's checkpoint, so a resume keeps its own
weights (and needs no ``init_from`` file); evaluation never reads it. Both pick the same key map
(:mod:`xvlm_lit.checkpoints.auto`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

log = logging.getLogger(__name__)


class InitFromAtFitStart:
    """Mixin for a LightningModule with ``self.model``: set ``init_from`` (a path or None) and ``import_fn(model,
    path) -> ImportReport`` (the task's strict importer) in ``__init__``."""

    init_from: str | None
    import_fn: Callable[[nn.Module, str | os.PathLike], Any]
    _restored: bool = False
    _initialised: bool = False

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A Lightning checkpoint is restored into this module (a resumed fit, or an evaluation)."""
        super().on_load_checkpoint(checkpoint)
        self._restored = True

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self._initialised:
            return
        self._initialised = True
        if self._restored or getattr(self.trainer, "ckpt_path", None):
            log.info("resuming a run: task.init_from is not applied")
            return
        if not self.init_from:
            log.warning("task.init_from is null: the model starts from the weights it was built with")
            return
        path = Path(self.init_from).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"task.init_from={self.init_from!r}: no such file (nothing is downloaded: give "
                                    "the checkpoint's local path)")
        report = type(self).import_fn(self.model, path)  # the same file on every rank: the replicas stay equal
        log.info("task.init_from: %s", report.summary())
