"""Micro VQA models and batches for tests (no weights, no data files)."""

from __future__ import annotations

import torch

from xvlm_lit.data.tasks.vqa import VQABatch
from xvlm_lit.models.fusion import FusionEncoder
from xvlm_lit.models.text import TextEncoder
from xvlm_lit.models.vision import VisionEncoder
from xvlm_lit.models.vqa import XVLMForVQA
from xvlm_lit.models.xvlm import XVLM
from xvlm_lit.testing import MICRO_BERT

CLS, SEP = 1, 2  # the micro vocabulary's start / end tokens (ids >= 5 are words)


def _parts(seed: int, vision_embed: int, fusion_layers: int) -> tuple[VisionEncoder, TextEncoder, FusionEncoder]:
    torch.manual_seed(seed)
    enc = VisionEncoder("swin_tiny_patch4_window7_224", 32, embed_dim=vision_embed, depths=(1, 1), num_heads=(1, 2),
                        window_size=4)
    return enc, TextEncoder(MICRO_BERT, 1), FusionEncoder(MICRO_BERT, fusion_layers, enc.width)


def micro_base(seed: int = 0, vision_embed: int = 24, fusion_layers: int = 2) -> XVLM:
    """A micro pre-trained-shaped X-VLM: 2-stage Swin at 32 px (``2 * vision_embed``-d tokens: 48, not the
    32-d text width, as Swin-B's 1024 vs BERT's 768), 1 text + ``fusion_layers`` fusion layers, dropout off."""
    return XVLM(*_parts(seed, vision_embed, fusion_layers), embed_dim=16)


def micro_vqa(seed: int = 0, vision_embed: int = 24, fusion_layers: int = 2) -> XVLMForVQA:
    """An :class:`XVLMForVQA` of :func:`micro_base`'s geometry (so a ``fusion_layers``-layer decoder), freshly
    initialised and deterministic for a seed."""
    return XVLMForVQA(*_parts(seed, vision_embed, fusion_layers))


def micro_answers(n: int = 12, max_len: int = 3, seed: int = 0, vocab: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` distinct answers ``[CLS] w1..wm [SEP]`` (m in 1..max_len), 0-padded: ids and mask ``[n, max_len+2]``."""
    g = torch.Generator().manual_seed(seed)
    seen: set[tuple[int, ...]] = set()
    rows = []
    while len(rows) < n:
        m = int(torch.randint(1, max_len + 1, (), generator=g))
        words = tuple(int(t) for t in torch.randint(5, vocab, (m,), generator=g))
        if words not in seen:
            seen.add(words)
            rows.append([CLS, *words, SEP])
    ids = torch.zeros(n, max_len + 2, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    return ids, mask


def micro_vqa_batch(model: XVLMForVQA, questions: int = 3, answers_per_question=(2, 1, 3), length: int = 6,
                    seed: int = 0) -> VQABatch:
    """A reproducible training batch: ``questions`` images/questions, each with its answers and weights."""
    g = torch.Generator().manual_seed(seed)
    r, vocab = model.image_size, model.text_encoder.spec.vocab_size
    ids = torch.randint(5, vocab, (questions, length), generator=g)
    ids[:, 0] = CLS
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0
    ids = ids * mask
    counts = list(answers_per_question)[:questions]
    a_ids, a_mask = micro_answers(sum(counts), seed=seed + 7, vocab=vocab)
    weights = torch.rand(sum(counts), generator=g)
    owner = torch.tensor([q for q, c in enumerate(counts) for _ in range(c)])
    return VQABatch(images=torch.randn(questions, 3, r, r, generator=g), text_ids=ids, text_mask=mask,
                    answer_ids=a_ids, answer_mask=a_mask, answer_weights=weights, answer_question=owner)
