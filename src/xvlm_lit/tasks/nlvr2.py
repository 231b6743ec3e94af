"""NLVR2: fine-tuning (true/false about an image pair) and the text-assignment domain pre-stage.

Both modules initialise the :class:`~xvlm_lit.models.nlvr.NLVRModel` from ``init_from`` when a fit starts (not on
resume; see :mod:`xvlm_lit.tasks.task_init`): the pair layers need the NLVR key map of
:mod:`xvlm_lit.checkpoints.nlvr_keymap` (pre-trained fusion layer k -> layers 2k and 2k+1), which the importer
picks for an NLVR model whatever the entry point (``model.init_from``, ``python -m xvlm_lit.eval``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torchmetrics.classification import BinaryAccuracy

from xvlm_lit.checkpoints.nlvr_keymap import init_nlvr
from xvlm_lit.data.tasks.nlvr2 import NLVRBatch
from xvlm_lit.tasks.finetune import FineTuneModule
from xvlm_lit.tasks.predictions import gather_rows, write_jsonl
from xvlm_lit.tasks.pretrain import PretrainModule
from xvlm_lit.tasks.task_init import InitFromAtFitStart

log = logging.getLogger(__name__)


class NLVR2Module(InitFromAtFitStart, FineTuneModule):
    """Trains with the ``nlvr`` plugin (cross-entropy of ``cls_head``); evaluates accuracy on ``dev`` (``val/acc``)
    and each test split (``test/<split>/acc``), logs the majority-label baseline (``.../majority_acc``: always
    answering the most frequent training label) and writes ``predictions_<split>.jsonl``.

    Args:
        init_from: checkpoint to start from (pre-trained X-VLM, the text-assignment pre-stage, or an NLVR one).
        output_dir: where the predictions files go.
    """

    import_fn = staticmethod(init_nlvr)

    def __init__(self, *args, init_from: str | None = None, output_dir: str | None = None, **kwargs) -> None:
        kwargs.setdefault("clamp_temp", False)  # the NLVR model has no contrastive temperature
        super().__init__(*args, **kwargs)
        self.init_from, self.output_dir = init_from, output_dir
        self._metrics: dict[int, BinaryAccuracy] = {}
        self._rows: dict[int, list[dict[str, Any]]] = {}

    def _metric(self, loader: int) -> BinaryAccuracy:
        if loader not in self._metrics:
            self._metrics[loader] = BinaryAccuracy().to(self.device)
        return self._metrics[loader]

    @torch.no_grad()
    def predict_batch(self, batch: NLVRBatch) -> torch.Tensor:
        """``P(true)`` ``[T]`` of each (pair, sentence)."""
        logits = self.model.pair_logits(batch.images, batch.images_right, batch.text_ids, batch.text_mask)
        return logits.float().softmax(-1)[:, 1]

    def _eval_step(self, batch: NLVRBatch | None, loader: int) -> None:
        if batch is None:
            return
        prob = self.predict_batch(batch)
        self._metric(loader).update(prob, batch.labels)
        rows = self._rows.setdefault(loader, [])
        for i in range(len(prob)):
            rows.append({"record": int(batch.record[i]), "label": bool(batch.labels[i]),
                         "pred": bool(prob[i] > 0.5), "prob_true": round(float(prob[i]), 5)})

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def _finish(self, loader: int) -> dict[str, float]:
        """Every rank calls this for every loader in the same order (the metric's compute synchronises)."""
        dm = self.trainer.datamodule
        split = self.eval_split_name(loader)
        metric = self._metric(loader)
        acc = float(metric.compute()) * 100
        metric.reset()
        labels = [int(r["label"]) for r in dm.split(split).records]
        majority = dm.majority_label()
        baseline = 100.0 * sum(v == majority for v in labels) / max(1, len(labels))
        prefix = f"test/{split}" if self.trainer.testing else "val"
        logged = {f"{prefix}/acc": acc, f"{prefix}/majority_acc": baseline}
        self.log_dict(logged, rank_zero_only=True, batch_size=1)
        rows = gather_rows(self._rows.pop(loader, []))
        if self.output_dir and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            records = dm.split(split).records
            for row in rows:
                rec = records[row["record"]]
                row.update(index=row["record"], image_id=rec.get("image_id"), identifier=rec.get("identifier"),
                           sentence=rec["sentence"])
            write_jsonl(rows, Path(self.output_dir) / f"predictions_{split}.jsonl", sort_key="index")
        return logged

    def on_validation_epoch_end(self) -> None:
        self._finish(0)

    def on_test_epoch_end(self) -> None:
        for loader in range(len(self.trainer.datamodule.test_splits)):
            self._finish(loader)


class NLVR2PretrainModule(InitFromAtFitStart, PretrainModule):
    """The text-assignment domain pre-stage: :class:`PretrainModule` with the ``ta`` plugin on image-text batches
    of a pre-training DataModule, the model built with ``text_assignment: true``; ``init_from`` a pre-trained
    X-VLM. Its ``last.ckpt`` is ``task.init_from`` of ``experiment=nlvr2``."""

    import_fn = staticmethod(init_nlvr)

    def __init__(self, *args, init_from: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init_from = init_from

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        """No contrastive temperature to clamp."""
