"""Supervised grounding (RefCOCO+): the box head on the fusion CLS of the full image and the expression."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.ops import box_convert

from xvlm_lit.callbacks.pictures import EvalPictures, draw_grounding, to_pil
from xvlm_lit.evaluation.metrics import GroundingAccuracy
from xvlm_lit.tasks.finetune import FineTuneModule
from xvlm_lit.tasks.predictions import gather_rows, write_jsonl


def to_original_pixels(pred_cxcywh: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Normalised (cx, cy, w, h) ``[N, 4]`` on the square-resized image -> (x1, y1, x2, y2) ``[N, 4]`` in pixels of
    the original ``size [N, 2]`` (width, height) image: the resize scales each axis independently."""
    wh = size.to(pred_cxcywh.dtype).repeat(1, 2)  # [N, 4]: W, H, W, H
    return box_convert(pred_cxcywh * wh, "cxcywh", "xyxy")


class GroundingModule(FineTuneModule):
    """Trains with the ``bbox`` plugin (L1 + GIoU); evaluates Acc@IoU>=0.5 in original image pixels per split,
    logs ``val/acc50`` (``test/<split>/acc50``) and writes ``predictions_<split>.jsonl`` to ``output_dir``."""

    def __init__(self, *args, output_dir: str | None = None, pictures: int = 8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.output_dir = output_dir
        self.pictures = EvalPictures(pictures)  # examples drawn per split: <output_dir>/pictures/<split>_grounding
        self._metrics: dict[int, GroundingAccuracy] = {}
        self._rows: dict[int, list[dict[str, Any]]] = {}

    def _metric(self, loader: int) -> GroundingAccuracy:
        if loader not in self._metrics:
            self._metrics[loader] = GroundingAccuracy().to(self.device)
        return self._metrics[loader]

    @torch.no_grad()
    def predict_batch(self, batch: dict[str, Any]) -> torch.Tensor:
        """``[N, 4]`` normalised (cx, cy, w, h) boxes for a batch of (image, expression)."""
        hidden = self.model.encode_text(batch["text_ids"], batch["text_mask"])
        fused = self.model.fuse(hidden, batch["text_mask"], self.model.encode_image(batch["images"]))
        return self.model.predict_box(fused).float()

    def _eval_step(self, batch: dict[str, Any] | None, loader: int) -> None:
        if batch is None:
            return
        norm = self.predict_batch(batch)
        pred = to_original_pixels(norm, batch["size"])
        target = box_convert(batch["box"].float(), "xywh", "xyxy")
        self._keep_pictures(batch, norm, target, loader)
        self._metric(loader).update(pred, target)
        rows = self._rows.setdefault(loader, [])
        for i in range(len(pred)):
            rows.append({"record": int(batch["record"][i]), "text": batch["texts"][i],
                         "pred_xyxy": [round(v, 2) for v in pred[i].tolist()],
                         "target_xyxy": [round(v, 2) for v in target[i].tolist()]})

    def _keep_pictures(self, batch: dict[str, Any], pred_norm: torch.Tensor, target_xyxy: torch.Tensor,
                       loader: int) -> None:
        """Draw the first examples (on the square model input: true box rescaled from original pixels)."""
        if not self.trainer.is_global_zero or self.trainer.sanity_checking:
            return
        r = batch["images"].shape[-1]
        for i in range(min(self.pictures.wanted(loader), len(pred_norm))):
            scale = r / batch["size"][i].to(target_xyxy).repeat(2)  # W, H, W, H -> R
            pred = box_convert(pred_norm[i] * r, "cxcywh", "xyxy")
            picture = draw_grounding(to_pil(batch["images"][i]), batch["texts"][i], (target_xyxy[i] * scale).tolist(),
                                     pred.tolist())
            self.pictures.add(loader, batch["texts"][i], picture)

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def _finish(self, loader: int) -> dict[str, float]:
        """Every rank calls this for every loader in the same order (the metric's compute synchronises)."""
        split = self.eval_split_name(loader)
        metric = self._metric(loader)
        result = metric.compute()
        metric.reset()
        prefix = f"test/{split}" if self.trainer.testing else "val"
        logged = {f"{prefix}/acc50": float(result["acc"]), f"{prefix}/mean_iou": float(result["mean_iou"])}
        self.log_dict(logged, rank_zero_only=True, batch_size=1)
        rows = gather_rows(self._rows.pop(loader, []))
        if self.output_dir and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            key = f"{prefix.replace('/', '_')}_grounding"
            self.pictures.flush(loader, self.output_dir, key, self.trainer.loggers, self.trainer.global_step)
            self._annotate(rows, split)
            write_jsonl(rows, Path(self.output_dir) / f"predictions_{split}.jsonl", sort_key="index")
        return logged

    def _annotate(self, rows: list[dict[str, Any]], split: str) -> None:
        records = self.trainer.datamodule.split(split).records
        order = sorted(range(len(rows)), key=lambda i: (rows[i]["record"], rows[i]["text"]))
        for n, i in enumerate(order):
            rec = records[rows[i]["record"]]
            rows[i].update(index=n, image_id=rec["image_id"], ref_id=rec.get("ref_id"))

    def on_validation_epoch_end(self) -> None:
        self._finish(0)

    def on_test_epoch_end(self) -> None:
        for loader in range(len(self.trainer.datamodule.test_splits)):
            self._finish(loader)
