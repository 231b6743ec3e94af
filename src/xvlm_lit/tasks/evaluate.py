"""Evaluate a fine-tuning task on its val and test splits with a Lightning trainer, and save the metrics."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L

from xvlm_lit.tasks.finetune import FineTuneModule
from xvlm_lit.utils.console import say

log = logging.getLogger(__name__)


def evaluate_task(trainer: L.Trainer, module: FineTuneModule, datamodule: L.LightningDataModule, out_dir: str | Path,
                  ckpt_path: str | None = None) -> dict[str, float]:
    """``trainer.validate`` + ``trainer.test`` (every test split), then ``out_dir/metrics.json``; returns the
    metrics (``val/...``, ``test/<split>/...``). ``ckpt_path``: Lightning checkpoint to load first (e.g. the best
    on val), None for the module's current weights."""
    metrics: dict[str, float] = {}
    for run in (trainer.validate, trainer.test):
        for result in run(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False):
            metrics |= {k: float(v) for k, v in result.items()}
    if trainer.is_global_zero:
        path = Path(out_dir) / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        say(format_metrics(metrics))
        say(f"metrics written to {path.resolve()}")
    return metrics


def format_metrics(metrics: dict[str, float]) -> str:
    """One line per split: ``val: tr_r1=.. ir_r1=..``."""
    groups: dict[str, list[str]] = {}
    for key in sorted(metrics):
        split, _, name = key.rpartition("/")
        groups.setdefault(split or "-", []).append(f"{name}={metrics[key]:.2f}")
    return "\n".join(f"{split}: {' '.join(items)}" for split, items in groups.items())
