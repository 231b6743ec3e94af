"""Run the zero-shot evaluation configured under ``eval`` after training, report and save it."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from omegaconf import DictConfig

from xvlm_lit.data.eval_data import load_grounding_eval, load_retrieval_eval
from xvlm_lit.evaluation.zero_shot import evaluate_zero_shot, format_table, write_metrics
from xvlm_lit.models.xvlm import XVLM
from xvlm_lit.utils.console import say

log = logging.getLogger("xvlm_lit.eval")


def run_zero_shot(model: XVLM, cfg: DictConfig, trainer: L.Trainer | None = None) -> dict[str, float]:
    """Evaluate on ``cfg.eval.split`` (shards of held-out images), print the table, log it, write metrics.json."""
    ev, data = cfg.eval, cfg.data
    common = dict(image_size=model.image_size, tokenizer=data.get("tokenizer_path"),
                  max_tokens=data.max_tokens, limit=ev.get("limit"), max_words=data.get("max_words", 30))
    retrieval = load_retrieval_eval(ev.split, **common)
    grounding = load_grounding_eval(ev.split, **common)
    metrics = evaluate_zero_shot(model, retrieval.to_dict(), grounding.to_dict(), rerank_k=ev.get("rerank_k", 16))
    skipped = {**retrieval.skipped, **{f"grounding_{k}": v for k, v in grounding.skipped.items()}}
    metrics |= {f"eval_skipped_{k}": float(v) for k, v in skipped.items()}
    table = format_table(metrics)
    say(table)
    path = write_metrics(metrics, Path(cfg.paths.output_dir))
    say(f"metrics written to {path.resolve()}")
    if trainer is not None:
        for logger in trainer.loggers:
            logger.log_metrics({f"zero_shot/{k}": v for k, v in metrics.items()}, step=trainer.global_step)
            logger.save()
    return metrics
