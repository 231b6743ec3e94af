"""Image-text retrieval (COCO, Flickr30K): ITC(idx) + ITM(idx) training; ITC top-k re-ranked by ITM evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xvlm_lit.callbacks.pictures import retrieval_examples, write_pictures
from xvlm_lit.evaluation.retrieval import SCORE_RULES, evaluate_retrieval
from xvlm_lit.tasks.finetune import FineTuneModule


class RetrievalModule(FineTuneModule):
    """Fine-tunes with the ``itc`` and ``itm`` plugins on (image, caption, image id) batches: captions of the same
    image are ITC positives and never ITM negatives. Evaluation (``val`` each epoch; ``test`` after training or
    through ``python -m xvlm_lit.eval``) runs :func:`~xvlm_lit.evaluation.retrieval.evaluate_retrieval` over the
    split's whole gallery, each rank encoding its shard of images; logs ``val/r_mean``, ``val/tr_r1``, ... and
    writes ``predictions_<split>.json`` (top-5 per query with image ids and texts) into ``output_dir``.

    Args:
        k_test: candidates re-ranked per query (reference: 256 COCO, 128 Flickr30K).
        score_rule: ``itm`` (reference), ``itm+itc`` or ``itc``.
        eval_batch_size: images/texts encoded at once; pair_batch_size: (image, text) pairs fused at once.
    """

    def __init__(self, *args, k_test: int = 256, score_rule: str = "itm", eval_batch_size: int = 64,
                 pair_batch_size: int = 128, output_dir: str | None = None, pictures: int = 8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if score_rule not in SCORE_RULES:
            raise ValueError(f"task.score_rule={score_rule!r}: choose one of {SCORE_RULES}")
        self.k_test, self.score_rule, self.output_dir = int(k_test), score_rule, output_dir
        self.eval_batch_size, self.pair_batch_size = eval_batch_size, pair_batch_size
        if pictures < 0:
            raise ValueError(f"task.pictures={pictures}: must be >= 0 (0 = no pictures)")
        self.pictures = int(pictures)  # text -> image top-5 rows per split: <output_dir>/pictures/<split>_retrieval

    def evaluate_split(self, split: str) -> dict[str, float]:
        """Metrics of ``split`` (every rank must call it: the protocol is collective)."""
        dm = self.trainer.datamodule
        gallery, ids, mask = dm.gallery(split)
        batches = ((b["images"], b["index"]) for b in dm.eval_dataloader(split) if b is not None)
        result = evaluate_retrieval(self.model, batches, ids, mask, gallery.text_to_image, k=self.k_test,
                                    score=self.score_rule, batch_size=self.eval_batch_size,
                                    pair_batch_size=self.pair_batch_size)
        if self.output_dir and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self._write_predictions(split, result.predictions(), gallery)
            self._write_pictures(split, result.ir_top_index, gallery)
        return result.metrics

    def _write_pictures(self, split: str, top_index, gallery) -> None:
        """The first ``pictures`` text queries with their top 5 images (read again from the gallery)."""
        if not self.pictures:
            return
        n = min(self.pictures, len(gallery.texts))
        wanted = {int(i) for i in top_index[:n, :5].flatten()}
        wanted |= {int(gallery.text_to_image[t]) for t in range(n)}
        dataset = self.trainer.datamodule.eval_dataset(split)
        images = {i: dataset[i]["image"] for i in sorted(wanted)}
        rows = retrieval_examples(images, gallery.texts, gallery.text_to_image, top_index, n)
        key = f"{'test_' + split if self.trainer.testing else 'val'}_retrieval"
        write_pictures(rows, self.output_dir, key, self.trainer.loggers, self.trainer.global_step)

    def _write_predictions(self, split: str, preds: dict[str, list[dict]], gallery) -> None:
        for row in preds["text_retrieval"]:
            row["image_id"] = gallery.image_ids[row["image"]]
            row["top_texts"] = [gallery.texts[t] for t in row["texts"]]
        for row in preds["image_retrieval"]:
            row["text_str"] = gallery.texts[row["text"]]
            row["true_image_id"] = gallery.image_ids[int(gallery.text_to_image[row["text"]])]
            row["top_image_ids"] = [gallery.image_ids[i] for i in row["images"]]
        path = Path(self.output_dir) / f"predictions_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(preds, ensure_ascii=False) + "\n")

    def _eval_step(self, split: str) -> None:
        metrics = self.evaluate_split(split)
        prefix = f"test/{split}" if self.trainer.testing else "val"
        self.log_dict({f"{prefix}/{k}": float(v) for k, v in metrics.items()}, rank_zero_only=True, batch_size=1)

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(self.eval_split_name(dataloader_idx))

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(self.eval_split_name(dataloader_idx))

