"""Weakly supervised grounding (RefCOCO+ weak): ITC + ITM on (expression, image); Grad-CAM ranks candidate boxes.

Training uses the ``itc`` and ``itm`` plugins on (whole image, expression, image id) batches (no box). Evaluation
follows X-VLM's ``Grounding.py``: the ITM positive logit of (image, expression) is differentiated w.r.t. the
cross-attention probabilities of one fusion layer (``gradcam_layer``; the reference's ``block_num: 9`` of BERT-base is
fusion layer 3 after 6 text layers); :mod:`xvlm_lit.evaluation.gradcam` turns them into a heat map that ranks the
image's candidate boxes of ``dets_file``; the best box is scored by Acc@IoU>=0.5 against the true box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchmetrics.aggregation import MeanMetric, SumMetric
from torchvision.ops import box_convert

from xvlm_lit.callbacks.pictures import EvalPictures, draw_heatmap, to_pil
from xvlm_lit.data.tasks.detections import Detections, read_detections
from xvlm_lit.evaluation.gradcam import gradcam_heatmap, pick_box, random_box_hit_rate
from xvlm_lit.evaluation.metrics import GroundingAccuracy, paired_iou
from xvlm_lit.models.attention import MultiHeadAttention
from xvlm_lit.tasks.finetune import FineTuneModule
from xvlm_lit.tasks.predictions import gather_rows, write_jsonl


def cross_attention(model, layer: int) -> MultiHeadAttention:
    """The cross-attention of fusion layer ``layer`` (0-based) of ``model``."""
    layers = model.fusion_encoder.layer
    if not 0 <= layer < len(layers):
        raise ValueError(f"task.gradcam_layer={layer}: the model has {len(layers)} fusion layers "
                         f"(0..{len(layers) - 1}); the reference's block_num 9 of BERT-base is fusion layer 3")
    return layers[layer].crossattention.self


def gradcam_maps(model, images: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor,
                 layer: int) -> torch.Tensor:
    """Grad-CAM heat maps ``[B, n, n]`` of (images ``[B, 3, R, R]``, texts ``[B, L]``) at fusion layer ``layer``.

    The encoders run without gradient; the fusion layers run with it and the probabilities of ``layer``'s
    cross-attention are kept; ``d sum_b itm_logit[b, 1] / d probs`` comes from ``torch.autograd.grad`` (no
    parameter ``.grad`` is touched). Works inside ``torch.inference_mode`` (Lightning's evaluation loops).
    """
    attn = cross_attention(model, layer)
    with torch.inference_mode(False), torch.enable_grad():
        images, text_ids, text_mask = images.clone(), text_ids.clone(), text_mask.clone()  # normal tensors
        with torch.no_grad():
            image = model.encode_image(images)
            hidden = model.encode_text(text_ids, text_mask)
        attn.keep_attention = True
        try:
            fused = model.fuse(hidden, text_mask, image)
            probs = attn.last_attention
            (grads,) = torch.autograd.grad(model.itm_logits(fused)[:, 1].sum(), probs)
        finally:
            attn.keep_attention, attn.last_attention = False, None
        return gradcam_heatmap(probs.detach(), grads, text_mask, model.grid_size)


class WeakGroundingModule(FineTuneModule):
    """Trains with ``itc`` + ``itm``; evaluates Grad-CAM box ranking per split: logs ``val/acc50`` (``test/<split>/
    acc50``), ``mean_iou``, ``random_box_acc50`` (expected Acc@IoU>=0.5 of a random candidate) and
    ``no_candidates`` (expressions whose image has no box in the file: counted as misses), and writes
    ``predictions_<split>.jsonl`` to ``output_dir``.

    Args:
        dets_file: the candidate boxes (:mod:`xvlm_lit.data.tasks.detections`), read at setup.
        gradcam_layer: 0-based fusion layer whose cross-attention is explained (reference: 3 of 6).
        alpha: box score = heat inside / area ** alpha (reference 0.5).
        threshold: IoU of a hit (0.5).
    """

    def __init__(self, *args, dets_file: str, gradcam_layer: int = 3, alpha: float = 0.5, threshold: float = 0.5,
                 output_dir: str | None = None, pictures: int = 8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cross_attention(self.model, gradcam_layer)  # fail at construction for a layer the model lacks
        self.dets_file, self.gradcam_layer, self.alpha, self.threshold = dets_file, gradcam_layer, alpha, threshold
        self.output_dir = output_dir
        self.pictures = EvalPictures(pictures)  # Grad-CAM overlays per split: <output_dir>/pictures/<split>_gradcam
        self.detections: Detections | None = None
        self._metrics: dict[int, torch.nn.ModuleDict] = {}
        self._rows: dict[int, list[dict[str, Any]]] = {}

    def setup(self, stage: str) -> None:
        if self.detections is None:
            self.detections = read_detections(self.dets_file)

    def _metric(self, loader: int) -> torch.nn.ModuleDict:
        if loader not in self._metrics:
            self._metrics[loader] = torch.nn.ModuleDict({
                "acc": GroundingAccuracy(self.threshold), "random": MeanMetric().set_dtype(torch.float64),
                "missing": SumMetric(),
            }).to(self.device)
        return self._metrics[loader]

    def _records(self, loader: int) -> list[dict[str, Any]]:
        return self.trainer.datamodule.split(self.eval_split_name(loader)).records

    def _eval_step(self, batch: dict[str, Any] | None, loader: int) -> None:
        if batch is None:
            return
        if self.detections is None:
            self.setup("validate")
        heat = gradcam_maps(self.model, batch["images"], batch["text_ids"], batch["text_mask"], self.gradcam_layer)
        records = self._records(loader)
        rows = [self._score(heat[i], batch, i, records) for i in range(len(heat))]
        self._keep_pictures(batch, heat, rows, loader)
        metric = self._metric(loader)
        pred = torch.tensor([r["pred_xywh"] or [0.0, 0.0, 0.0, 0.0] for r in rows], dtype=torch.float32)
        target = torch.tensor([r["target_xywh"] for r in rows], dtype=torch.float32)
        metric["acc"].update(box_convert(pred, "xywh", "xyxy"), box_convert(target, "xywh", "xyxy"))
        metric["random"].update(torch.tensor([r["random_hit"] for r in rows], dtype=torch.float64))
        metric["missing"].update(torch.tensor([float(r["pred_xywh"] is None) for r in rows]))
        self._rows.setdefault(loader, []).extend(rows)

    def _score(self, heat: torch.Tensor, batch: dict[str, Any], i: int,
               records: list[dict[str, Any]]) -> dict[str, Any]:
        """The prediction row of sample ``i`` (heat ``[n, n]``)."""
        record_index = int(batch["record"][i])
        record = records[record_index]
        target = batch["box"][i].float().cpu()
        cands = torch.tensor(self.detections.candidates(record["image_id"]), dtype=torch.float32).reshape(-1, 4)
        row = {"record": record_index, "text": batch["texts"][i], "target_xywh": target.tolist(),
               "candidates": len(cands), "pred_xywh": None, "pred_index": None, "iou": 0.0,
               "random_hit": random_box_hit_rate(cands, target, self.threshold)}
        if len(cands):
            width, height = (int(v) for v in batch["size"][i])
            best, _ = pick_box(heat.float(), cands.to(heat.device), height, width, self.alpha)
            pred = cands[best]
            iou = paired_iou(box_convert(pred[None], "xywh", "xyxy"), box_convert(target[None], "xywh", "xyxy"))
            row.update(pred_xywh=pred.tolist(), pred_index=best, iou=float(iou[0]))
        return row

    def _keep_pictures(self, batch: dict[str, Any], heat: torch.Tensor, rows: list[dict[str, Any]],
                       loader: int) -> None:
        """Grad-CAM over the square model input, with the true and the picked box rescaled from original pixels."""
        if not self.trainer.is_global_zero or self.trainer.sanity_checking:
            return
        r = batch["images"].shape[-1]
        for i in range(min(self.pictures.wanted(loader), len(rows))):
            scale = r / batch["size"][i].float().cpu().repeat(2)  # W, H, W, H -> R
            true, pred = (None if b is None else (box_convert(torch.tensor(b), "xywh", "xyxy") * scale).tolist()
                          for b in (rows[i]["target_xywh"], rows[i]["pred_xywh"]))
            picture = draw_heatmap(to_pil(batch["images"][i]), heat[i], rows[i]["text"], true, pred)
            self.pictures.add(loader, rows[i]["text"], picture)

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def _finish(self, loader: int) -> dict[str, float]:
        """Every rank calls this for every loader in the same order (the metrics' compute synchronises)."""
        split = self.eval_split_name(loader)
        metric = self._metric(loader)
        acc = metric["acc"].compute()
        logged = {"acc50": float(acc["acc"]), "mean_iou": float(acc["mean_iou"]),
                  "random_box_acc50": 100.0 * float(metric["random"].compute()),
                  "no_candidates": float(metric["missing"].compute())}
        for m in metric.values():
            m.reset()
        prefix = f"test/{split}" if self.trainer.testing else "val"
        logged = {f"{prefix}/{k}": v for k, v in logged.items()}
        self.log_dict(logged, rank_zero_only=True, batch_size=1)
        rows = gather_rows(self._rows.pop(loader, []))
        if self.output_dir and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            key = f"{prefix.replace('/', '_')}_gradcam"
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
