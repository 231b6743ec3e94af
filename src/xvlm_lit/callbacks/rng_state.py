"""``RngState``: the random generators of the training process travel with the checkpoint.

Lightning restores weights, optimizer, schedulers and loop counters but no random generator, so a resumed run draws
other dropout masks (and ITM negatives) than the uninterrupted one. This callback saves torch's CPU (and CUDA)
generators, numpy's and Python's global ones in the checkpoint and puts them back right before the first training
batch after a resume, i.e. after everything that runs between restoring and training (data loader start-up,
sanity validation). Validation also runs inside a fork of the generators, so training draws the same random numbers
whether and however often it is validated (which a resume that skips an already-run validation relies on).

The data pipeline needs none of this: its workers seed every generator from ``(seed, rank, worker, epoch)`` and
the loader's own state (see :class:`xvlm_lit.data.datamodule.StepLoader`).
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


def capture() -> dict[str, Any]:
    """The global generators' states: ``torch`` (CPU ByteTensor), ``cuda`` (one per device), ``numpy``,
    ``python``; tensors and plain values only, so ``torch.load(weights_only=True)`` reads them."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": random.getstate()}


def restore(state: dict[str, Any]) -> None:
    """Put back states from :func:`capture` (CUDA states only when this process has as many devices)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])


class RngState(Callback):
    """Saves and restores the training process's random generators (see the module docstring).

    In multi-process training the checkpoint holds rank 0's generators and every rank gets them back, which is
    exact while the ranks draw alike (the same seed and the same calls, as in this project's training steps).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._outside_validation: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": capture()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._pending is not None:
            restore(self._pending)
            self._pending = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._outside_validation = capture()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._outside_validation is not None:
            restore(self._outside_validation)
            self._outside_validation = None
