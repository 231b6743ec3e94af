"""Image captioning (COCO Karpathy): the whole BERT as a causal LM attending the image, beam-search decoding.

Training uses the ``caption`` loss plugin (label-smoothed next-token loss after the prompt). Evaluation captions
every image of a split once over all ranks (beam 3, at most 20 and at least 5 tokens counting the prompt, prompt
stripped), scores against the split's references with pycocoevalcap (:mod:`xvlm_lit.evaluation.caption`), logs
``val/cider`` (``test/<split>/cider``, ``bleu1``..``bleu4``, ``meteor``, ``rouge_l``, ``spice``: x100, the paper's
scale) and writes ``captions_<split>.json`` (``[{"image_id", "caption"}]``, COCO's results format). The trivial
baseline, one constant caption for every image (the best of the most frequent training captions by CIDEr on val),
is logged as ``.../constant_cider``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from xvlm_lit.checkpoints.caption_keymap import init_caption
from xvlm_lit.evaluation.caption import CaptionScores
from xvlm_lit.evaluation.caption_baseline import best_constant_caption, constant_cider, frequent_captions
from xvlm_lit.models.caption import PROMPT, IncrementalLM
from xvlm_lit.models.generation import beam_search, greedy_search
from xvlm_lit.models.xvlm import XVLM
from xvlm_lit.tasks.finetune import FineTuneModule
from xvlm_lit.tasks.task_init import InitFromAtFitStart

log = logging.getLogger(__name__)

#: pycocoevalcap's names -> ours
METRIC_NAMES = {"Bleu_1": "bleu1", "Bleu_2": "bleu2", "Bleu_3": "bleu3", "Bleu_4": "bleu4", "METEOR": "meteor",
                "ROUGE_L": "rouge_l", "CIDEr": "cider", "SPICE": "spice"}


def prompt_ids(tokenizer, prompt: str, batch: int, device: torch.device) -> torch.Tensor:
    """``[CLS] prompt`` (no [SEP]) ``[B, P]``: what generation continues (the reference's ``input_ids[:, :-1]``)."""
    pieces = tokenizer(prompt.strip(), add_special_tokens=False)["input_ids"] if prompt.strip() else []
    return torch.tensor([tokenizer.cls_token_id, *pieces], device=device).expand(batch, -1)


@torch.no_grad()
def generate_captions(model: XVLM, images: torch.Tensor, tokenizer, prompt: str = PROMPT, num_beams: int = 3,
                      max_length: int = 20, min_length: int = 5, length_penalty: float = 1.0) -> list[str]:
    """Captions of ``images [B, 3, R, R]``: decoding continues ``[CLS] prompt``; lengths count the prompt; the
    prompt and everything from [SEP] on are removed from the returned text."""
    tokens = model.encode_image(images)
    start = prompt_ids(tokenizer, prompt, images.shape[0], images.device)
    eos, pad = tokenizer.sep_token_id, tokenizer.pad_token_id or 0
    if num_beams == 1:
        out = greedy_search(IncrementalLM(model, tokens), start, max_length, min_length, eos, pad)
    else:
        step = IncrementalLM(model, tokens.repeat_interleave(num_beams, dim=0))
        out = beam_search(step, start, num_beams, max_length, min_length, eos, pad, length_penalty)
    captions = []
    for row in out[:, start.shape[1]:].tolist():
        if eos in row:
            row = row[: row.index(eos)]
        captions.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return captions


class CaptionModule(InitFromAtFitStart, FineTuneModule):
    """Fine-tunes an :class:`XVLM` as a captioner and evaluates it with beam search (see the module docstring).

    Args:
        init_from: checkpoint read through the caption key map when a fit starts (not on resume): a pre-trained
            X-VLM (ours or the reference's), the caption pre-stage's ``last.ckpt``, or a reference captioning
            ``.th`` (``text_decoder.*``); ``model.init_from`` takes them all too.
        prompt, num_beams, max_length, min_length, length_penalty: decoding (reference: "a picture of ", 3, 20,
            5, 1.0); the prompt must equal ``data.prompt``.
        spice: also run SPICE (slow; needs its jars); constant_baseline: log the constant-caption baseline,
            choosing among the ``baseline_candidates`` most frequent training captions on ``val``.
        output_dir: where ``captions_<split>.json`` go.
    """

    import_fn = staticmethod(init_caption)

    def __init__(self, *args, init_from: str | None = None, prompt: str = PROMPT, num_beams: int = 3,
                 max_length: int = 20, min_length: int = 5, length_penalty: float = 1.0, spice: bool = True,
                 constant_baseline: bool = True, baseline_candidates: int = 5, output_dir: str | None = None,
                 **kwargs) -> None:
        kwargs.setdefault("clamp_temp", False)  # the contrastive temperature plays no part in captioning
        super().__init__(*args, **kwargs)
        self.init_from, self.prompt, self.output_dir = init_from, prompt, output_dir
        self.num_beams, self.max_length, self.min_length = int(num_beams), int(max_length), int(min_length)
        self.length_penalty, self.spice = float(length_penalty), bool(spice)
        self.constant_baseline, self.baseline_candidates = bool(constant_baseline), int(baseline_candidates)
        self._scores: dict[int, CaptionScores] = {}
        self._constant: str | None = None

    def generate(self, images: torch.Tensor) -> list[str]:
        return generate_captions(self.model, images, self.trainer.datamodule.tokenizer, self.prompt, self.num_beams,
                                 self.max_length, self.min_length, self.length_penalty)

    def _eval_step(self, batch, loader: int) -> None:
        if batch is None:
            return
        records = self.trainer.datamodule.split(self.eval_split_name(loader)).records
        ids = [str(records[int(r)]["image_id"]) for r in batch.record]
        self._scores.setdefault(loader, CaptionScores()).update(ids, self.generate(batch.images))

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def _finish(self, loader: int) -> dict[str, float]:
        """Every rank calls this for every loader in the same order (gathering and scoring are collective)."""
        dm = self.trainer.datamodule
        split = self.eval_split_name(loader)
        acc = self._scores.pop(loader, CaptionScores())
        res = acc.gather()
        result = acc.compute(dm.references(split), spice=self.spice)
        for name, reason in result.get("skipped", {}).items():
            log.warning("caption scores of %s: %s skipped (%s)", split, name, reason)
        prefix = f"test/{split}" if self.trainer.testing else "val"
        logged = {f"{prefix}/{ours}": 100.0 * float(result[coco]) for coco, ours in METRIC_NAMES.items()
                  if coco in result}
        self.log_dict(logged, rank_zero_only=True, batch_size=1)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            if self.constant_baseline:
                baseline = {f"{prefix}/constant_cider": 100.0 * self._constant_cider(split)}
                self.log_dict(baseline, rank_zero_only=True, batch_size=1)
                logged |= baseline
            if self.output_dir:
                self._write(res, split)
        return logged

    def _constant_cider(self, split: str) -> float:
        dm = self.trainer.datamodule
        if self._constant is None:
            candidates = frequent_captions(dm.training_captions(), self.baseline_candidates)
            self._constant, scores = best_constant_caption(dm.references(dm.val_split), candidates)
            log.info("constant-caption baseline %r (CIDEr on %s of the candidates: %s)", self._constant, dm.val_split,
                     {c: round(100 * s, 2) for c, s in scores.items()})
        return constant_cider(dm.references(split), self._constant)

    def _write(self, res: dict[Any, str], split: str) -> None:
        original = {str(r["image_id"]): r["image_id"] for r in self.trainer.datamodule.split(split).records}
        rows = [{"image_id": original.get(k, k), "caption": c} for k, c in sorted(res.items(), key=lambda kv: kv[0])]
        path = Path(self.output_dir) / f"captions_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, ensure_ascii=False) + "\n", encoding="utf-8")

    def on_validation_epoch_end(self) -> None:
        self._finish(0)

    def on_test_epoch_end(self) -> None:
        for loader in range(len(self.trainer.datamodule.test_splits)):
            self._finish(loader)
