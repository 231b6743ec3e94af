"""Image/region-text contrastive loss over the batch gathered from every rank."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.losses.base import LossPlugin, StepCache
from xvlm_lit.losses.gather import all_gather_no_grad, all_gather_with_grad
from xvlm_lit.models.xvlm import XVLM


def positives(idx: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """``[n, n]`` bool: the diagonal, or every pair sharing an ``idx``."""
    if idx is None:
        return torch.eye(n, dtype=torch.bool, device=device)
    return idx[:, None] == idx[None, :]


def soft_cross_entropy(logits: torch.Tensor, pos: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean over ``rows`` of ``-sum_j target_ij log softmax(logits)_ij`` with targets = normalised ``pos``."""
    target = pos.float() / pos.sum(1, keepdim=True).clamp_min(1)
    per_row = -(F.log_softmax(logits, dim=1) * target).sum(1)
    return (per_row * rows).sum() / rows.sum().clamp_min(1)


def contrastive_loss(image_feat: torch.Tensor, text_feat: torch.Tensor, temp: torch.Tensor,
                     idx: torch.Tensor | None = None, valid: torch.Tensor | None = None,
                     exact_gradient: bool = True) -> torch.Tensor:
    """Symmetric InfoNCE on features gathered across ranks.

    Args:
        image_feat, text_feat: ``[B, E]`` normalised local features (same B on every rank).
        temp: scalar temperature (logits = sim / temp).
        idx: ``[B]`` ids; equal ids are positives of each other (fine-tuning); None = diagonal.
        valid: ``[B]`` bool; invalid entries are neither rows nor columns.
        exact_gradient: the full-batch gradient (ours) or the reference's 1/W feature gradient.

    Returns:
        scalar ``(CE(image->text) + CE(text->image)) / 2``.
    """
    img = all_gather_with_grad(image_feat.float(), exact_gradient)
    txt = all_gather_with_grad(text_feat.float(), exact_gradient)
    n = img.shape[0]
    ok = torch.ones(image_feat.shape[0], dtype=torch.uint8, device=img.device) if valid is None \
        else valid.to(torch.uint8)
    ok = all_gather_no_grad(ok).bool()
    ids = None if idx is None else all_gather_no_grad(idx)
    pos = positives(ids, n, img.device) & ok[None, :] & ok[:, None]
    with torch.autocast(img.device.type, enabled=False):  # fp32 similarities under bf16/fp16 autocast too
        logits = (img @ txt.t() / temp).masked_fill(~ok[None, :], torch.finfo(torch.float32).min)
        logits_t = (txt @ img.t() / temp).masked_fill(~ok[None, :], torch.finfo(torch.float32).min)
    return (soft_cross_entropy(logits, pos, ok) + soft_cross_entropy(logits_t, pos.t(), ok)) / 2


class ITCLoss(LossPlugin):
    """Plugin: ``itc_loss`` on the cached image/region and text features (plus ``temp`` for logging).

    Args:
        weight: multiplier of ``itc_loss`` in the total.
        exact_gradient: see :func:`contrastive_loss`.
        id_positives: texts sharing ``batch.idx`` are positives of each other (ours, and the reference's
            fine-tuning); False = the plain diagonal targets of the reference's pre-training, whatever the ids.
    """

    name = "itc"

    def __init__(self, weight: float = 1.0, exact_gradient: bool = True, id_positives: bool = True) -> None:
        super().__init__(weight)
        self.exact_gradient, self.id_positives = exact_gradient, bool(id_positives)

    def forward(self, model: XVLM, batch: VLBatch, cache: StepCache) -> dict[str, torch.Tensor]:
        idx = batch.idx if self.id_positives else None
        loss = contrastive_loss(cache.image_feat, cache.text_feat, model.temp, idx, batch.valid,
                                self.exact_gradient)
        return {"itc_loss": loss, "temp": model.temp.detach()}
