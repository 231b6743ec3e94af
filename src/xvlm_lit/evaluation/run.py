"""Run the zero-shot evaluation configured under ``eval`` after training, report and save it."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from omegaconf import DictConfig
from torchvision.ops import box_convert

from xvlm_lit.callbacks.pictures import grounding_examples, retrieval_examples, write_pictures
from xvlm_lit.data.eval_data import GroundingEval, RetrievalEval, load_grounding_eval, load_retrieval_eval
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
    details: dict = {}
    metrics = evaluate_zero_shot(model, retrieval.to_dict(), grounding.to_dict(), rerank_k=ev.get("rerank_k", 16),
                                 details=details)
    skipped = {**retrieval.skipped, **{f"grounding_{k}": v for k, v in grounding.skipped.items()}}
    metrics |= {f"eval_skipped_{k}": float(v) for k, v in skipped.items()}
    table = format_table(metrics)
    say(table)
    path = write_metrics(metrics, Path(cfg.paths.output_dir))
    say(f"metrics written to {path.resolve()}")
    loggers = trainer.loggers if trainer is not None else []
    step = trainer.global_step if trainer is not None else None
    write_zero_shot_pictures(retrieval, grounding, details, int(ev.get("pictures", 8) or 0), cfg.paths.output_dir,
                             loggers, step)
    if trainer is not None:
        for logger in trainer.loggers:
            logger.log_metrics({f"zero_shot/{k}": v for k, v in metrics.items()}, step=trainer.global_step)
            logger.save()
    return metrics


def write_zero_shot_pictures(retrieval: RetrievalEval, grounding: GroundingEval, details: dict, n: int,
                             out_dir: str | Path, loggers=(), step: int | None = None) -> list[Path]:
    """``n`` grounding examples and ``n`` text -> image top-5 rows under ``out_dir/pictures/zero_shot_*``
    (``n=0``: none)."""
    if n <= 0:
        return []
    r = grounding.images.shape[-1]
    pred = box_convert(details["grounding_pred"] * r, "cxcywh", "xyxy")
    ground = grounding_examples(grounding.images, grounding.image_index, grounding.texts, grounding.boxes_xyxy,
                                pred, n)
    ranked = retrieval_examples(retrieval.images, retrieval.captions, retrieval.text_to_image,
                                details["retrieval"].ir_top_index, n)
    return [*write_pictures(ground, out_dir, "zero_shot_grounding", loggers, step),
            *write_pictures(ranked, out_dir, "zero_shot_retrieval", loggers, step)]
