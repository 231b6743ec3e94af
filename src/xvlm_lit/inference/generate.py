"""Captioning and VQA answers through the project's task inference code, with the run's task settings."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from xvlm_lit.inference.errors import InferenceError

if TYPE_CHECKING:
    from xvlm_lit.inference.predictor import Predictor

CAPTION_DEFAULTS = {"prompt": "a picture of ", "num_beams": 3, "max_length": 20, "min_length": 5,
                    "length_penalty": 1.0}
#: the VQA evaluation's question limits (data/tasks/vqa.py: EVAL_MAX_WORDS, eval_max_tokens)
VQA_EVAL_WORDS, VQA_EVAL_TOKENS = 50, 64

log = logging.getLogger(__name__)


@torch.no_grad()
def caption_images(p: Predictor, pils: Sequence[Image.Image], decoding: dict[str, Any]) -> list[str]:
    """Captions of ``pils`` with :func:`xvlm_lit.tasks.caption.generate_captions` (chunks of ``batch_size``)."""
    from xvlm_lit.tasks.caption import generate_captions

    unknown = set(decoding) - set(CAPTION_DEFAULTS)
    if unknown:
        raise InferenceError(f"unknown caption settings {sorted(unknown)}: choose among {sorted(CAPTION_DEFAULTS)}")
    opts = {k: decoding.get(k, p.config.task.get(k, v)) for k, v in CAPTION_DEFAULTS.items()}
    out: list[str] = []
    for s in range(0, len(pils), p.batch_size):
        images = p.pre.images(pils[s:s + p.batch_size]).to(p.device)
        out += generate_captions(p.model, images, p.pre.tokenizer, **opts)
    return out


def answer_list(p: Predictor) -> list[str] | None:
    """The run's candidate answers (``data.answer_list``, else ``<data.root>/answer_list.json``), if readable."""
    from xvlm_lit.data.tasks.vqa import ANSWER_LIST, read_answer_list

    data = p.config.data
    path = data.get("answer_list") or (Path(str(data["root"])) / ANSWER_LIST if data.get("root") else None)
    if path is None or not Path(str(path)).expanduser().is_file():
        return None
    return read_answer_list(Path(str(path)).expanduser())


@torch.no_grad()
def answer_questions(p: Predictor, pils: Sequence[Image.Image], questions: Sequence[str],
                     candidates: Sequence[str] | None) -> list[str]:
    """One answer per (image, question): ranking over the candidates, or generation (module of the VQA task)."""
    from xvlm_lit.data.tasks.vqa import tokenize_answers
    from xvlm_lit.evaluation.vqa_inference import generate_answers, rank_answers

    data, task, tok = p.config.data, p.config.task, p.pre.tokenizer
    words = max(int(data.get("max_words", 30)), VQA_EVAL_WORDS)
    length = max(int(data.get("max_tokens", 40)), int(data.get("eval_max_tokens", VQA_EVAL_TOKENS)))
    candidates = list(candidates) if candidates is not None else answer_list(p)
    if candidates is None:
        log.warning("no answer list found (data.answer_list / <data.root>/answer_list.json): answers are generated; "
                    "pass candidates=[...] (CLI: --answers file.txt) to rank a list as the VQA evaluation does")
    rank = candidates is not None and task.get("inference", "rank") == "rank"
    out: list[str] = []
    for s in range(0, len(pils), p.batch_size):
        ids, mask = p.pre.texts(questions[s:s + p.batch_size], max_tokens=length, max_words=words)
        ids, mask = ids.to(p.device), mask.to(p.device)
        states = p.model.encode_question(p.pre.images(pils[s:s + p.batch_size]).to(p.device), ids, mask)
        decoder = p.model.answer_decoder
        if rank:
            a_ids, a_mask = tokenize_answers(tok, candidates, int(data.get("max_answer_tokens", 16)))
            ranking = rank_answers(decoder, states, mask, a_ids, a_mask, int(task.get("k_test", 128)),
                                   int(task.get("rank_chunk_size", 1024)))
            out += [candidates[j] for j in ranking.best.tolist()]
        else:
            tokens = generate_answers(decoder, states, mask, tok.cls_token_id, tok.sep_token_id,
                                      int(task.get("max_answer_tokens", 10)), int(task.get("num_beams", 1)),
                                      tok.pad_token_id or 0)
            out += [tok.decode(t, skip_special_tokens=True).strip() for t in tokens]
    return out
