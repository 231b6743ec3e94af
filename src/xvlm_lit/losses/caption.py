"""The captioning language-model loss (next-token prediction with label smoothing) as a loss plugin.

Fine-tuning batches (:class:`~xvlm_lit.data.tasks.caption.CaptionBatch`) carry ``lm_labels``: the ids of
``[CLS] prompt caption [SEP]`` with the prompt (and [CLS]) and the padding set to -100, as the reference's
``decoder_targets[:, :prompt_length] = -100``. On a pre-training image-text batch (``[CLS] caption``, no [SEP]: the
caption domain pre-stage) the plugin appends [SEP] itself (``append_sep``) and predicts every caption token.
"""

from __future__ import annotations

import torch

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.losses.base import LossPlugin, StepCache
from xvlm_lit.models.caption import lm_hidden
from xvlm_lit.models.xvlm import XVLM

IGNORE = -100


def smoothed_nll(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Mean loss of ``logits [N, V]`` against ``target [N]``. With ``smoothing = e`` the target distribution is the
    reference's ``LabelSmoothSoftmaxCEV1``: ``1 - e`` on the true token and ``e / V`` on each other one (not
    torch's ``1 - e + e / V`` on the true token)."""
    logp = logits.float().log_softmax(-1)
    true = logp.gather(1, target[:, None]).squeeze(1)
    if smoothing == 0:
        return -true.mean()
    others = logp.sum(-1) - true
    return -((1 - smoothing) * true + smoothing / logp.shape[-1] * others).mean()


def smoothed_lm_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Mean next-token loss over the real targets of a batch: ``logits [B, L, V]`` at position ``i`` predict
    ``labels [B, L]`` at ``i + 1`` (-100 = ignored); see :func:`smoothed_nll`."""
    target = labels[:, 1:]
    keep = target != IGNORE
    if not keep.any():
        return logits.sum() * 0.0
    return smoothed_nll(logits[:, :-1][keep], target[keep], smoothing)


def lm_loss(model: XVLM, hidden: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """:func:`smoothed_lm_loss` of ``model.mlm_head(hidden)``, the head evaluated only where a target is learned
    (the vocabulary projection dominates a small model's step; prompt and padding positions are skipped)."""
    target = labels[:, 1:]
    keep = target != IGNORE
    if not keep.any():
        return hidden.sum() * 0.0
    return smoothed_nll(model.mlm_head(hidden[:, :-1][keep]), target[keep], smoothing)


def append_sep(ids: torch.Tensor, mask: torch.Tensor, sep_id: int, max_tokens: int) -> tuple[torch.Tensor,
                                                                                           torch.Tensor]:
    """``[CLS] X`` rows -> ``[CLS] X [SEP]``, at most ``max_tokens`` long (a full row loses its last wordpiece, as
    the reference's ``tokens[:max_tokens - 1] + [SEP]``)."""
    lengths = mask.sum(1)
    width = min(max(int(lengths.max()) + 1, 2), max_tokens) if len(ids) else 1
    out = torch.zeros(ids.shape[0], width, dtype=ids.dtype, device=ids.device)
    keep = min(ids.shape[1], width)
    out[:, :keep] = ids[:, :keep]
    pos = lengths.clamp_max(width - 1)
    rows = torch.arange(ids.shape[0], device=ids.device)
    out[rows, pos] = sep_id
    new_mask = (torch.arange(width, device=ids.device)[None] <= pos[:, None]).to(mask.dtype)
    return out * new_mask, new_mask


class CaptionLoss(LossPlugin):
    """``caption_loss``: the causal LM loss of the whole BERT attending each text's image.

    Args:
        weight: loss weight.
        label_smoothing: the reference fine-tunes with 0.1 and domain-pre-trains with 0.
        append_sep: on batches without ``lm_labels`` (pre-training image-text), append [SEP] = ``sep_id`` and
            learn every token after [CLS]; ``max_tokens`` bounds the row length.
    """

    name = "caption"

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.1, append_sep: bool = True,
                 sep_id: int = 102, max_tokens: int = 40) -> None:
        super().__init__(weight)
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"loss.caption.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing, self.append_sep = float(label_smoothing), bool(append_sep)
        self.sep_id, self.max_tokens = int(sep_id), int(max_tokens)

    def forward(self, model: XVLM, batch: VLBatch, cache: StepCache) -> dict[str, torch.Tensor]:
        if batch.patch_mask is not None:
            return {}  # region batches: no caption to learn
        labels = getattr(batch, "lm_labels", None)
        ids, mask = batch.text_ids, batch.text_mask
        if labels is None:
            if not self.append_sep:
                return {}
            ids, mask = append_sep(ids, mask, self.sep_id, self.max_tokens)
            labels = ids.masked_fill(mask == 0, IGNORE)
        labels = labels.masked_fill(~batch.valid_mask()[:, None], IGNORE)
        hidden = lm_hidden(model, cache.full_image_tokens, ids, mask)
        return {"caption_loss": lm_loss(model, hidden, labels, self.label_smoothing),
                "caption_tokens": (labels[:, 1:] != IGNORE).sum().float()}

