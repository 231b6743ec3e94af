"""VQA v2: the weighted answer loss; answer-list ranking (or generation) scored with the VQA accuracy."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from xvlm_lit.config import ConfigError
from xvlm_lit.evaluation.vqa import VQAAccuracy, vqa_accuracy, write_vqa_results
from xvlm_lit.evaluation.vqa_inference import generate_answers, rank_answers
from xvlm_lit.tasks.finetune import FineTuneModule
from xvlm_lit.tasks.predictions import gather_rows, write_jsonl

log = logging.getLogger(__name__)
INFERENCE = ("rank", "generate")
TOP_IN_PREDICTIONS = 5


class VQAModule(FineTuneModule):
    """Fine-tunes an :class:`~xvlm_lit.models.vqa.XVLMForVQA` with the ``vqa`` loss plugin
    (:class:`~xvlm_lit.losses.vqa.VQALoss`) on :class:`~xvlm_lit.data.tasks.vqa.VQATaskDataModule` batches.

    Evaluation answers every question of the val split (``val/vqa_acc``) and of each test split
    (``test/<split>/vqa_acc``; a split without answers, such as VQA test-dev, logs only ``num_questions``), and
    writes ``vqa_results_<split>.json`` (the evaluation server's ``[{"question_id", "answer"}]``) and
    ``predictions_<split>.jsonl`` (question, answers, prediction, top candidates with scores) into ``output_dir``.

    Args:
        init_from: the pre-trained checkpoint (ours or the reference's), or the reference's fine-tuned VQA one,
            loaded with the VQA key map (:mod:`xvlm_lit.checkpoints.vqa_keymap`) when fitting starts, unless the
            fit resumes a run (``ckpt_path``: the run's own weights are kept). ``model.init_from`` reads the same
            files through the same map, but at build time (also on resume).
        inference: ``rank`` (the reference's protocol over the answer list) or ``generate`` (open-ended).
        k_test: candidates re-scored per question by ``rank`` (reference 128).
        num_beams, max_answer_tokens: ``generate``'s beam width (1 = greedy) and length limit.
        rank_chunk_size: candidate sequences scored at once (memory bound of the ranking).
        majority_baseline: also log ``<prefix>/majority_acc``, the accuracy of always answering the training
            split's most frequent (weighted) answer.
    """

    def __init__(self, *args, init_from: str | None = None, allow_random_init: bool = False,
                 inference: str = "rank", k_test: int = 128, num_beams: int = 1, max_answer_tokens: int = 10,
                 rank_chunk_size: int = 1024, majority_baseline: bool = True, output_dir: str | None = None,
                 **kwargs) -> None:
        kwargs["clamp_temp"] = False  # no contrastive temperature in the VQA model
        super().__init__(*args, **kwargs)
        if inference not in INFERENCE:
            raise ValueError(f"task.inference={inference!r}: choose one of {INFERENCE}")
        self.init_from, self.allow_random_init = init_from, allow_random_init
        self.inference, self.k_test = inference, int(k_test)
        self.num_beams, self.max_answer_tokens, self.rank_chunk_size = num_beams, max_answer_tokens, rank_chunk_size
        self.majority_baseline, self.output_dir = majority_baseline, output_dir
        self._initialised = self._restored = False
        self._metrics: dict[int, VQAAccuracy] = {}
        self._rows: dict[int, list[dict[str, Any]]] = {}
        self._answers: tuple[torch.Tensor, torch.Tensor] | None = None
        self._by_tokens: dict[tuple[int, ...], str] | None = None
        self._majority: str | None | bool = False  # False: not computed yet

    # ------------------------------------------------------------------ training
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A Lightning checkpoint is being restored into this module (a resumed fit, or an evaluation)."""
        self._restored = True

    def on_fit_start(self) -> None:
        """Apply ``init_from`` through the VQA key map, unless the fit resumes a run (Lightning restores the
        module before this hook, so the run's own weights are kept)."""
        if self._initialised:
            return
        self._initialised = True
        if self._restored or getattr(self.trainer, "ckpt_path", None):
            log.info("resuming a run: task.init_from is not applied")
            return
        if not self.init_from:
            if not self.allow_random_init:
                raise ConfigError("task.init_from is not set: give the pre-trained checkpoint to fine-tune from "
                                  "(task.init_from=<ours .ckpt/.safetensors or the reference's .th>), or "
                                  "task.allow_random_init=true to train from the weights the model was built with "
                                  "(e.g. model.init_from=<a VQA run's checkpoint>)")
            return
        from xvlm_lit.checkpoints.vqa_keymap import init_vqa_from

        path = Path(self.init_from).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"task.init_from={self.init_from!r}: no such file (nothing is downloaded: give "
                                    "the pre-trained checkpoint's local path)")
        report = init_vqa_from(self.model, path)  # the same file on every rank: the replicas stay equal
        log.info("VQA model initialised: %s", report.summary())

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        """Nothing to clamp (VQA has no contrastive temperature)."""

    # ------------------------------------------------------------------ evaluation
    def _metric(self, loader: int) -> VQAAccuracy:
        if loader not in self._metrics:
            self._metrics[loader] = VQAAccuracy().to(self.device)
        return self._metrics[loader]

    def _answer_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._answers is None or self._answers[0].device != self.device:
            ids, mask = self.trainer.datamodule.answer_tokens()
            self._answers = (ids.to(self.device), mask.to(self.device))
        return self._answers

    def _decode(self, tokens: list[int]) -> str:
        """Generated ids -> text: the answer-list entry with exactly these tokens when there is one, else the
        tokenizer's decoding."""
        dm = self.trainer.datamodule
        if self._by_tokens is None:
            ids, mask = dm.answer_tokens()
            self._by_tokens = {}
            for answer, row, m in zip(dm.answer_list, ids.tolist(), mask.tolist(), strict=True):
                self._by_tokens.setdefault(tuple(row[1:sum(m) - 1]), answer)
        return self._by_tokens.get(tuple(tokens)) or dm.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    @torch.no_grad()
    def answer_batch(self, batch: dict[str, Any]) -> tuple[list[str], list[list[tuple[str, float]]]]:
        """The predicted answer of each question of an evaluation batch, and its top candidates with their
        scores (``rank``: ``log p(first) - NLL``; ``generate``: none)."""
        dm = self.trainer.datamodule
        mask = batch["text_mask"]
        states = self.model.encode_question(batch["images"], batch["text_ids"], mask)
        decoder = self.model.answer_decoder
        if self.inference == "rank":
            ids, amask = self._answer_tokens()
            ranking = rank_answers(decoder, states, mask, ids, amask, self.k_test, self.rank_chunk_size)
            answers = dm.answer_list
            top = [[(answers[i], round(s, 4)) for i, s in zip(r_ids, r_scores, strict=True)]
                   for r_ids, r_scores in zip(ranking.ids[:, :TOP_IN_PREDICTIONS].tolist(),
                                              ranking.scores[:, :TOP_IN_PREDICTIONS].tolist(), strict=True)]
            return [t[0][0] for t in top], top
        tok = dm.tokenizer
        tokens = generate_answers(decoder, states, mask, tok.cls_token_id, tok.sep_token_id,
                                  self.max_answer_tokens, self.num_beams, tok.pad_token_id or 0)
        return [self._decode(t) for t in tokens], [[] for _ in tokens]

    def _eval_step(self, batch: dict[str, Any] | None, loader: int) -> None:
        if batch is None:
            return
        split = self.eval_split_name(loader)
        records = self.trainer.datamodule.split(split).records
        preds, top = self.answer_batch(batch)
        scored_p, scored_a = [], []
        rows = self._rows.setdefault(loader, [])
        for n, index in enumerate(batch["index"].tolist()):
            rec = records[index]
            answers = rec.get("answers") or []
            if answers:
                scored_p.append(preds[n])
                scored_a.append(answers)
            rows.append({"index": index, "question_id": rec["question_id"], "image_id": rec.get("image_id"),
                         "question": rec["question"], "answer": preds[n], "answers": answers,
                         "top": [list(t) for t in top[n]], "image_ok": bool(batch["ok"][n])})
        if scored_p:
            self._metric(loader).update(scored_p, scored_a)

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def majority_answer(self) -> str | None:
        if self._majority is False:
            self._majority = self.trainer.datamodule.majority_answer()
        return self._majority

    def _finish(self, loader: int) -> dict[str, float]:
        """Every rank calls this for every loader in the same order (the metric's compute synchronises)."""
        split = self.eval_split_name(loader)
        metric = self._metric(loader)
        acc = float(metric.compute())
        metric.reset()
        rows = gather_rows(self._rows.pop(loader, []))
        prefix = f"test/{split}" if self.trainer.testing else "val"
        logged = {f"{prefix}/num_questions": float(len(rows))}
        if acc == acc:  # some question had answers
            logged[f"{prefix}/vqa_acc"] = acc
            if self.majority_baseline:
                majority = self.majority_answer()
                scored = [r["answers"] for r in rows if r["answers"]]
                if majority is not None:
                    logged[f"{prefix}/majority_acc"] = 100.0 * sum(vqa_accuracy(majority, a) for a in scored) / len(
                        scored)
        self.log_dict(logged, rank_zero_only=True, batch_size=1)
        if self.output_dir and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            out = Path(self.output_dir)
            write_jsonl(rows, out / f"predictions_{split}.jsonl", sort_key="index")
            try:
                write_vqa_results(rows, out / f"vqa_results_{split}.json")
            except ValueError as err:  # e.g. non-integer question ids: the server format cannot hold them
                log.warning("vqa_results_%s.json not written: %s", split, err)
        return logged

    def on_validation_epoch_end(self) -> None:
        self._finish(0)

    def on_test_epoch_end(self) -> None:
        for loader in range(len(self.trainer.datamodule.test_splits)):
            self._finish(loader)
