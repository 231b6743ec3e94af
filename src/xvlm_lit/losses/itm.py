"""Image/region-text matching with hard negatives drawn from the contrastive similarities."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.losses.base import LossPlugin, StepCache
from xvlm_lit.losses.itc import positives
from xvlm_lit.models.xvlm import XVLM


def sample_negatives(weights: torch.Tensor, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """One index per row drawn from the row's (unnormalised) ``weights`` ``[T, T]``, on-device, no host sync.

    Returns:
        ``(index [T], has_negative [T] bool)``; a row whose weights are all zero has no valid negative: it gets an
        arbitrary index and ``has_negative = False`` so callers can drop that pair.
    """
    has = weights.sum(1) > 0
    safe = torch.where(has[:, None], weights, torch.ones_like(weights))
    return torch.multinomial(safe, 1, generator=generator).squeeze(1), has


@torch.no_grad()
def hard_negative_weights(image_feat: torch.Tensor, text_feat: torch.Tensor, temp: torch.Tensor,
                          idx: torch.Tensor | None, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampling weights ``softmax(sim / temp) + 1e-5`` with positives, same-``idx`` and invalid entries zeroed.

    Returns ``(w_i2t [T, T]`` rows = images, columns = texts; ``w_t2i [T, T]`` rows = texts, columns = images).
    """
    sim = image_feat.float() @ text_feat.float().t() / temp
    blocked = positives(idx, sim.shape[0], sim.device) | ~valid[None, :]
    w_i2t = (F.softmax(sim, dim=1) + 1e-5).masked_fill(blocked, 0)
    w_t2i = (F.softmax(sim.t(), dim=1) + 1e-5).masked_fill(blocked, 0)
    return w_i2t, w_t2i


def matching_pairs(image: torch.Tensor, image_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                   neg_image: torch.Tensor, neg_text: torch.Tensor):
    """Stack positives, (text, negative image) and (negative text, image): each ``[3T, ...]``."""
    texts = torch.cat([text, text, text[neg_text]])
    text_masks = torch.cat([text_mask, text_mask, text_mask[neg_text]])
    images = torch.cat([image, image[neg_image], image])
    image_masks = torch.cat([image_mask, image_mask[neg_image], image_mask])
    return texts, text_masks, images, image_masks


class ITMLoss(LossPlugin):
    """Plugin: ``itm_loss`` (CE over B positives and 2B hard negatives) and ``itm_acc``.

    Args:
        weight: multiplier of ``itm_loss`` in the total.
        id_positives: a pair sharing ``batch.idx`` is never drawn as a negative (ours, and the reference's
            fine-tuning); False = only the pair itself is excluded, as in the reference's pre-training.
    """

    name = "itm"

    def __init__(self, weight: float = 1.0, id_positives: bool = True) -> None:
        super().__init__(weight)
        self.id_positives = bool(id_positives)

    def forward(self, model: XVLM, batch: VLBatch, cache: StepCache) -> dict[str, torch.Tensor]:
        valid = batch.valid_mask()
        idx = batch.idx if self.id_positives else None
        w_i2t, w_t2i = hard_negative_weights(cache.image_feat, cache.text_feat, model.temp, idx, valid)
        neg_image, has_neg_image = sample_negatives(w_t2i)  # a negative image for each text
        neg_text, has_neg_text = sample_negatives(w_i2t)  # a negative text for each image
        pairs = matching_pairs(cache.image_tokens, cache.image_mask, cache.text_hidden, batch.text_mask,
                               neg_image, neg_text)
        logits = model.itm_logits(model.fuse(pairs[0], pairs[1], pairs[2], pairs[3]))
        labels = itm_labels(valid, has_neg_image, has_neg_text)
        loss = F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum")
        counted = (labels != -100).sum()
        correct = ((logits.argmax(1) == labels) & (labels != -100)).sum()
        denom = counted.clamp_min(1)
        return {"itm_loss": loss / denom, "itm_acc": correct.float() / denom}


def itm_labels(valid: torch.Tensor, has_neg_image: torch.Tensor, has_neg_text: torch.Tensor) -> torch.Tensor:
    """``[3T]`` labels 1 (positive) / 0 (negative), -100 for padding entries and pairs with no negative."""
    ones, zeros = torch.ones_like(valid, dtype=torch.long), torch.zeros_like(valid, dtype=torch.long)
    labels = torch.cat([ones, zeros, zeros])
    keep = torch.cat([valid, valid & has_neg_image, valid & has_neg_text])
    return labels.masked_fill(~keep, -100)
