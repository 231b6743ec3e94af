"""NLVR2 losses: the pair classification (fine-tuning) and the 3-way text assignment (domain pre-stage).

Text assignment (reference ``models/model_nlvr_pretrain.py``, run by ``NLVR_pretrain.py`` on the 4M image-text
data): for each caption, its own image is paired with a similar image of the batch (drawn from softmax(image-image
cosine / 0.07), self excluded) and put left (label 0) or right (label 1) with equal probability, or, with
probability 1/3, two *other* images are drawn (label 2: the text describes neither). ``ta_head`` (Linear H->3) on
the CLS after the paired fusion layers; cross-entropy. The draws use no gradient, as in the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.data.tasks.nlvr2 import NLVRBatch
from xvlm_lit.losses.base import LossPlugin, StepCache
from xvlm_lit.models.nlvr import TA_LEFT, TA_NEITHER, TA_RIGHT, NLVRModel


class NLVRLoss(LossPlugin):
    """Cross-entropy of ``cls_head`` on (left image, right image, sentence) -> true/false; logs the accuracy."""

    name = "nlvr"

    def forward(self, model: NLVRModel, batch: VLBatch, cache: StepCache) -> dict[str, torch.Tensor]:
        if not isinstance(batch, NLVRBatch) or batch.labels is None:
            return {}
        logits = model.pair_logits(batch.images, batch.images_right, batch.text_ids, batch.text_mask)
        return {"nlvr_loss": F.cross_entropy(logits.float(), batch.labels),
                "nlvr_acc": (logits.argmax(-1) == batch.labels).float().mean().detach()}


def draw_text_assignment(image_feat: torch.Tensor, same_image: torch.Tensor, valid: torch.Tensor, temp: float,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                                            torch.Tensor]:
    """The reference's pair draw, vectorised.

    Args:
        image_feat: ``[T, E]`` normalised features of each text's image.
        same_image: ``[T, T]`` bool, True where two texts share an image (never drawn as a partner).
        valid: ``[T]`` bool, padding texts are never drawn.
        temp: softmax temperature of the image-image cosine.

    Returns:
        left ``[T]``, right ``[T]`` (text indices whose images go left / right) and labels ``[T]``
        (0: the text's own image is left, 1: right, 2: neither).
    """
    t = image_feat.shape[0]
    device = image_feat.device
    weights = F.softmax(image_feat.float() @ image_feat.float().T / temp, dim=1)
    weights = weights.masked_fill(same_image | ~valid[None, :], 0.0)
    candidates = (weights > 0).sum(1)
    weights = torch.where(candidates[:, None] > 0, weights, torch.ones_like(weights))  # nothing else: any image
    draws = torch.multinomial(weights, 2, replacement=bool((candidates < 2).any()), generator=generator)
    u = torch.rand(t, 2, device=device, generator=generator)
    own = torch.arange(t, device=device)
    one_other = u[:, 0] > 1 / 3
    own_left = u[:, 1] > 0.5
    left = torch.where(one_other, torch.where(own_left, own, draws[:, 0]), draws[:, 0])
    right = torch.where(one_other, torch.where(own_left, draws[:, 0], own), draws[:, 1])
    labels = torch.where(one_other, torch.where(own_left, TA_LEFT, TA_RIGHT), TA_NEITHER)
    return left, right, labels.to(torch.long)


class TextAssignmentLoss(LossPlugin):
    """The NLVR2 domain pre-stage on an image-text batch: ``ta_loss`` (3-way CE) and ``ta_acc``.

    Args:
        weight: loss weight.
        temp: temperature of the image-image similarity that draws the partner images (reference: 0.07);
            None = the model's ``pairing_temp``.
    """

    name = "ta"

    def __init__(self, weight: float = 1.0, temp: float | None = None) -> None:
        super().__init__(weight)
        self.temp = temp

    def forward(self, model: NLVRModel, batch: VLBatch, cache: StepCache) -> dict[str, torch.Tensor]:
        if isinstance(batch, NLVRBatch) or batch.patch_mask is not None:
            return {}  # image-text batches only (the reference's pre-stage reads the image-text stream)
        valid = batch.valid_mask()
        tokens = cache.full_image_tokens  # [T, 1+N, Dv]: each text's image, encoded once
        index = batch.image_index if batch.image_index is not None else torch.arange(batch.num_texts,
                                                                                      device=valid.device)
        with torch.no_grad():
            feat = model.image_feat(tokens)
            temp = self.temp if self.temp is not None else model.pairing_temp
            left, right, labels = draw_text_assignment(feat, index[:, None] == index[None, :], valid, temp)
        hidden = cache.text_hidden
        fused = model.fuse_pair(hidden, batch.text_mask, tokens[left], tokens[right])
        logits = model.ta_head(fused[:, 0]).float()
        loss = F.cross_entropy(logits[valid], labels[valid])
        acc = (logits.argmax(-1) == labels)[valid].float().mean()
        return {"ta_loss": loss, "ta_acc": acc.detach()}
