"""Grounding by the box head: Acc@IoU>=0.5, with the best constant-box baseline."""

from __future__ import annotations

import torch
from torchvision.ops import box_convert, box_iou

from xvlm_lit.evaluation.metrics import GroundingAccuracy, paired_iou
from xvlm_lit.models.xvlm import XVLM
from xvlm_lit.utils.progress import progress


def accuracy_at_iou(pred_xyxy: torch.Tensor, target_xyxy: torch.Tensor, threshold: float = 0.5) -> float:
    """Percentage of rows of ``[N, 4]`` boxes whose IoU with their target is at least ``threshold`` (local)."""
    metric = GroundingAccuracy(threshold, sync_on_compute=False)
    metric.update(pred_xyxy, target_xyxy)
    return metric.compute()["acc"]


def mean_iou(pred_xyxy: torch.Tensor, target_xyxy: torch.Tensor) -> float:
    """Mean IoU (percent) of rows of ``[N, 4]`` boxes with their targets (local)."""
    return float(paired_iou(pred_xyxy, target_xyxy).double().mean() * 100)


def best_constant_box(target_cxcywh: torch.Tensor, steps: int = 12, threshold: float = 0.5
                      ) -> tuple[torch.Tensor, float]:
    """The single normalised box (searched on a grid of centres and sizes) with the highest Acc@IoU on
    ``target_cxcywh [N, 4]``, and that accuracy: what predicting one box for every text would score. The box is
    returned clipped to the image (cx, cy, w, h of the clipped box), as it was scored."""
    grid = (torch.arange(steps) + 0.5) / steps
    cands = torch.cartesian_prod(grid, grid, grid, grid)  # cx, cy, w, h
    cands = torch.cat([cands, target_cxcywh.median(0).values[None], target_cxcywh.mean(0)[None]])
    xyxy = box_convert(cands, "cxcywh", "xyxy").clamp(0, 1)
    targets = box_convert(target_cxcywh.float(), "cxcywh", "xyxy")
    hits = torch.zeros(len(cands))
    for s in range(0, len(cands), 4096):
        hits[s:s + 4096] = (box_iou(xyxy[s:s + 4096], targets) >= threshold).float().mean(1)
    best = int(hits.argmax())
    return box_convert(xyxy[best], "xyxy", "cxcywh"), float(hits[best] * 100)


@torch.no_grad()
def predict_boxes(model: XVLM, images: torch.Tensor, image_index: torch.Tensor, text_ids: torch.Tensor,
                  text_mask: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Normalised (cx, cy, w, h) ``[T, 4]`` for each text on its full image (``image_index [T]``)."""
    device = next(model.parameters()).device
    tokens = torch.cat([model.encode_image(images[s:s + batch_size].to(device))
                        for s in range(0, len(images), batch_size)])
    out = []
    for s in progress(range(0, len(text_ids), batch_size), "grounding: predicting boxes", every=50,
                      unit="batches"):
        ids, mask = text_ids[s:s + batch_size].to(device), text_mask[s:s + batch_size].to(device)
        fused = model.fuse(model.encode_text(ids, mask), mask, tokens[image_index[s:s + batch_size].to(device)])
        out.append(model.predict_box(fused).float().cpu())
    return torch.cat(out)
