"""Micro models and random batches for tests and benchmarks (no weights, no data files)."""

from __future__ import annotations

import torch

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.geometry import boxes_to_patch_mask
from xvlm_lit.models.fusion import FusionEncoder
from xvlm_lit.models.text import BertSpec, TextEncoder
from xvlm_lit.models.vision import VisionEncoder
from xvlm_lit.models.xvlm import XVLM

MICRO_BERT = BertSpec(vocab_size=400, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                      max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def micro_xvlm(seed: int = 0, image_size: int = 32, vision: str = "swin") -> XVLM:
    """A deterministic X-VLM with a 2-stage Swin (4x4 grid at 32 px) and a 1+1-layer BERT, dropout off."""
    torch.manual_seed(seed)
    if vision == "swin":
        enc = VisionEncoder("swin_tiny_patch4_window7_224", image_size, embed_dim=16, depths=(1, 1),
                            num_heads=(1, 2), window_size=4)
    else:
        enc = VisionEncoder("vit_tiny_patch16_224", image_size, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    return XVLM(enc, TextEncoder(MICRO_BERT, 1), FusionEncoder(MICRO_BERT, 1, enc.width), embed_dim=16)


def random_batch(model: XVLM, num_images: int, texts_per_image: int = 1, length: int = 8, max_masks: int = 3,
                 seed: int = 0, regions: bool = True) -> VLBatch:
    """A reproducible batch: every image has ``texts_per_image`` texts (regions with boxes when ``regions``)."""
    g = torch.Generator().manual_seed(seed)
    r, vocab = model.image_size, model.text_encoder.spec.vocab_size
    t = num_images * texts_per_image
    ids = torch.randint(5, vocab, (t, length), generator=g)
    ids[:, 0] = 1
    mask = torch.ones(t, length, dtype=torch.long)
    mask[::2, -2:] = 0  # some padding
    ids = ids * mask
    pos = torch.stack([torch.randperm(length - 3, generator=g)[:max_masks] + 1 for _ in range(t)])
    labels = torch.gather(ids, 1, pos)
    labels[1::3, -1] = -100
    masked = ids.clone().scatter_(1, pos, 3)
    batch = VLBatch(images=torch.randn(num_images, 3, r, r, generator=g), text_ids=ids, text_mask=mask,
                    masked_ids=masked, masked_pos=pos, masked_labels=labels,
                    image_index=torch.arange(num_images).repeat_interleave(texts_per_image))
    if regions:
        xy = torch.rand(t, 2, generator=g) * r * 0.6
        wh = torch.rand(t, 2, generator=g) * r * 0.35 + 2
        boxes = torch.cat([xy, wh], 1)
        batch.patch_mask = boxes_to_patch_mask(boxes, r, model.grid_size)
        batch.target_box = torch.cat([(xy + wh / 2) / r, wh / r], 1)
        batch.has_box = torch.ones(t, dtype=torch.bool)
        batch.has_box[0] = False
        batch.idx = torch.arange(t) + 1000 * seed  # globally unique across seeds (ranks)
    return batch


def concat_batches(batches: list[VLBatch]) -> VLBatch:
    """One batch holding several batches' images and texts (image_index re-based), as one process would see."""
    out = {}
    offset, indices = 0, []
    for b in batches:
        index = b.image_index if b.image_index is not None else torch.arange(b.images.shape[0])
        indices.append(index + offset)
        offset += b.images.shape[0]
    for name in VLBatch.__dataclass_fields__:
        values = [getattr(b, name) for b in batches]
        out[name] = None if values[0] is None else torch.cat(values)
    out["image_index"] = torch.cat(indices)
    return VLBatch(**out)
