"""Masked language modelling conditioned on the image or region."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.losses.base import LossPlugin, StepCache
from xvlm_lit.models.xvlm import XVLM


class MLMLoss(LossPlugin):
    """Plugin: ``mlm_loss`` = CE mean over every real masked token of the batch, and ``mlm_acc``.

    The whole stack runs again on the masked ids (text layers, then fusion attending the image/region with its
    mask); the tied head is evaluated at the masked positions only.
    """

    name = "mlm"

    def forward(self, model: XVLM, batch: VLBatch, cache: StepCache) -> dict[str, torch.Tensor]:
        if batch.masked_ids is None:
            return {}
        hidden = model.encode_text(batch.masked_ids, batch.text_mask)
        fused = model.fuse(hidden, batch.text_mask, cache.image_tokens, cache.image_mask)
        logits = model.mlm_logits(fused, batch.masked_pos).float()  # [T, M, V]
        labels = batch.masked_labels.masked_fill(~batch.valid_mask()[:, None], -100)
        total = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
        real = labels != -100
        count = real.sum().clamp_min(1)
        correct = ((logits.argmax(-1) == labels) & real).sum()
        return {"mlm_loss": total / count, "mlm_acc": correct.float() / count}
