"""Items -> :class:`~xvlm_lit.data.batch.VLBatch` (tokenize ``[CLS] wordpieces``, MLM-mask, stack, pad).

Padding entries (``valid=False``) are the empty text (``[CLS]`` alone, so no attention row is empty and nothing is
masked), a zero image in image-text batches, image 0 with an all-ones patch mask in region batches, target
``[0.5, 0.5, 1, 1]``, ``has_box=False`` and a unique negative ``idx`` (never equal to a real id).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.data.masking import MLMMasker, RandomSource
from xvlm_lit.data.samples import ItcItem, RegionItem, RegionText
from xvlm_lit.data.tokenizer import encode_captions, pad_ids
from xvlm_lit.data.transforms import box_xywh_to_cxcywh_norm
from xvlm_lit.geometry import boxes_to_patch_mask

WHOLE_IMAGE_BOX = (0.5, 0.5, 1.0, 1.0)


class TextEncoder:
    """Tokenizes and MLM-masks texts for one stream.

    Args:
        tokenizer: BERT wordpiece tokenizer.
        max_tokens: ``L`` (``[CLS]`` included, no ``[SEP]``).
        max_masks: ``M``, the cap on masked positions.
        mask_prob: fraction of tokens masked before the cap.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_tokens: int, max_masks: int,
                 mask_prob: float = 0.25) -> None:
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        self.masker = MLMMasker(tokenizer, mask_prob=mask_prob, max_masks=max_masks)

    def __call__(self, texts: Sequence[str], rngs: RandomSource | Sequence[RandomSource]) -> dict[str, torch.Tensor]:
        """Encode ``T`` texts; ``rngs`` is one generator for all or one per text.

        Returns:
            ``text_ids``/``text_mask`` LongTensor [T, L] (L = the longest text, <= max_tokens);
            ``masked_ids`` [T, L]; ``masked_pos``/``masked_labels``
            LongTensor [T, M] (padded 0 / -100).
        """
        ids = encode_captions(self.tokenizer, list(texts), self.max_tokens)
        # pad to the longest text of this batch, not to max_tokens: region texts are a few tokens long, and
        # every layer's cost scales with L (lengths may differ between ranks; only features are gathered)
        length = max((len(r) for r in ids), default=1)
        text_ids, text_mask = pad_ids(ids, length, pad_id=self.tokenizer.pad_token_id or 0)
        per_text = isinstance(rngs, list | tuple)
        m = self.masker.max_masks
        out = {"masked_ids": text_ids.clone(), "masked_pos": torch.zeros(len(ids), m, dtype=torch.long),
               "masked_labels": torch.full((len(ids), m), -100, dtype=torch.long)}
        for i, row in enumerate(ids):
            m_ids, m_pos, m_lab = self.masker(row, rngs[i] if per_text else rngs)
            out["masked_ids"][i, : m_ids.numel()] = m_ids
            out["masked_pos"][i], out["masked_labels"][i] = m_pos, m_lab
        return {"text_ids": text_ids, "text_mask": text_mask, **out}


def text_rngs(seed: int, ids: Sequence[int]) -> list[random.Random]:
    """One generator per text seeded by ``(seed, id)``: masking independent of batching (evaluation)."""
    return [random.Random(f"{seed}/{i}") for i in ids]


def collate_itc(items: Sequence[ItcItem | None], encoder: TextEncoder, rngs: RandomSource | Sequence[RandomSource],
                image_size: int) -> VLBatch:
    """``T`` image-text slots (None = padding): images ``[T, 3, R, R]``, texts ``[T, L]``, ``image_index=None``."""
    valid = torch.tensor([it is not None for it in items], dtype=torch.bool)
    zero = torch.zeros(3, image_size, image_size)
    images = torch.stack([it.image if it is not None else zero for it in items])
    texts = [it.text if it is not None else "" for it in items]
    idx = torch.tensor([it.idx if it is not None else -1 - k for k, it in enumerate(items)], dtype=torch.long)
    return VLBatch(images=images, idx=idx, valid=valid, **encoder(texts, rngs))


def collate_region(items: Sequence[RegionItem], slots: int, encoder: TextEncoder,
                   rngs: RandomSource | Sequence[RandomSource], image_size: int, grid_size: int) -> VLBatch:
    """Region items -> a batch of exactly ``slots`` texts over ``len(items)`` images (at least one image).

    Texts beyond ``slots`` are dropped (the last items' last texts); missing ones are padding (``valid=False``).
    Returns ``images [B,3,R,R]``, ``image_index [T]``, ``patch_mask [T,1+n*n]``, ``target_box [T,4]`` (normalised
    cxcywh), ``has_box [T]``, ``idx [T]``, ``valid [T]`` and the text fields.
    """
    if not items:
        items = [RegionItem(torch.zeros(3, image_size, image_size), [], "")]
    flat: list[tuple[int, RegionText]] = [(b, t) for b, it in enumerate(items) for t in it.texts][:slots]
    n_pad = slots - len(flat)
    texts = [t.text for _, t in flat] + [""] * n_pad
    boxes = torch.tensor([t.box if t.box is not None else (0.0, 0.0, image_size, image_size) for _, t in flat],
                         dtype=torch.float32).reshape(-1, 4)
    has_box = torch.tensor([t.box is not None for _, t in flat] + [False] * n_pad, dtype=torch.bool)
    patch = boxes_to_patch_mask(boxes, image_size, grid_size)
    patch = torch.cat([patch, torch.ones(n_pad, patch.shape[1])])
    patch[~has_box] = 1.0
    target = box_xywh_to_cxcywh_norm(boxes, image_size).reshape(-1, 4)
    target = torch.cat([target, torch.tensor([WHOLE_IMAGE_BOX] * n_pad).reshape(-1, 4)])
    target[~has_box] = torch.tensor(WHOLE_IMAGE_BOX)
    return VLBatch(
        images=torch.stack([it.image for it in items]),
        image_index=torch.tensor([b for b, _ in flat] + [0] * n_pad, dtype=torch.long),
        patch_mask=patch,
        target_box=target,
        has_box=has_box,
        idx=torch.tensor([t.idx for _, t in flat] + [-1 - k for k in range(n_pad)], dtype=torch.long),
        valid=torch.tensor([True] * len(flat) + [False] * n_pad, dtype=torch.bool),
        **encoder(texts, rngs),
    )
