"""Box regression of the region a text describes: L1 + generalised IoU."""

from __future__ import annotations

import torch
from torchvision.ops import box_convert, generalized_box_iou_loss

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.losses.base import LossPlugin, StepCache
from xvlm_lit.models.xvlm import XVLM


def box_losses(pred: torch.Tensor, target: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 (summed over the 4 coordinates) and ``1 - GIoU``, each averaged over the kept boxes.

    Args:
        pred, target: ``[T, 4]`` normalised (cx, cy, w, h).
        keep: ``[T]`` bool; boxes not kept (whole-image captions, padding, zero-area targets) add nothing.

    Returns:
        ``(l1, giou)`` scalars; both 0 (still connected to ``pred``) when no box is kept.
    """
    keep = keep & (target[:, 2] > 0) & (target[:, 3] > 0)
    n = keep.sum().clamp_min(1)
    weight = keep.to(pred.dtype)
    l1 = ((pred - target).abs().sum(1) * weight).sum() / n
    safe_target = torch.where(keep[:, None], target, pred.detach())  # masked rows never produce NaN
    giou = generalized_box_iou_loss(box_convert(pred, "cxcywh", "xyxy"),
                                    box_convert(safe_target, "cxcywh", "xyxy"), reduction="none")
    return l1, (giou * weight).sum() / n


class BBoxLoss(LossPlugin):
    """Plugin: ``bbox_l1_loss`` and ``bbox_giou_loss`` on region batches (full image, unmasked text).

    Image-text batches (no ``target_box``) get ``{}``.
    """

    name = "bbox"

    def forward(self, model: XVLM, batch: VLBatch, cache: StepCache) -> dict[str, torch.Tensor]:
        if batch.target_box is None:
            return {}
        tokens = cache.full_image_tokens
        fused = model.fuse(cache.text_hidden, batch.text_mask, tokens, None)
        pred = model.predict_box(fused).float()
        keep = batch.valid_mask()
        if batch.has_box is not None:
            keep = keep & batch.has_box.to(torch.bool)
        l1, giou = box_losses(pred, batch.target_box.float(), keep)
        return {"bbox_l1_loss": l1, "bbox_giou_loss": giou}
