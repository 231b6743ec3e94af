"""Captioning with X-VLM's own network: the whole BERT as a causal language model attending the image.

As the reference (``models/model_captioning.py``: ``BertLMHeadModel`` over the 12-layer BERT, ``is_decoder=True``),
every layer's self-attention is causal (text layers and fusion layers alike), the fusion layers cross-attend the
image tokens, and the LM head is the MLM head (transform + decoder tied to the word embeddings). Nothing is added
to :class:`~xvlm_lit.models.xvlm.XVLM`: a captioning model *is* an X-VLM (its contrastive, matching and box heads
stay unused), so pre-trained checkpoints, ours or the reference's, load with the generic importer.
"""

from __future__ import annotations

import torch

from xvlm_lit.models.text import TextEncoder
from xvlm_lit.models.xvlm import XVLM

#: the reference's captioning prompt, excluded from the loss and stripped from generated captions
PROMPT = "a picture of "


def text_layers(text: TextEncoder, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                causal: bool = False) -> torch.Tensor:
    """The text encoder's embeddings and layers with an explicit mask: ``[B, L]`` -> ``[B, L, H]``.

    ``causal=False`` equals :meth:`TextEncoder.forward`; ``causal=True`` lets position ``i`` attend positions
    ``<= i`` (and never padding), the reference's decoder mask. The layers are run one by one with a boolean
    ``[B, 1, L, L]`` mask (True = attend), so the default path of :class:`TextEncoder` is untouched.
    """
    bert = text.bert
    hidden = bert.embeddings(input_ids=input_ids)
    mask = attention_mask.to(torch.bool)[:, None, None, :]
    if causal:
        length = input_ids.shape[1]
        mask = mask & torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
    for layer in bert.encoder.layer:
        hidden = layer(hidden, attention_mask=mask)
    return hidden


def lm_hidden(model: XVLM, image_tokens: torch.Tensor, input_ids: torch.Tensor,
              attention_mask: torch.Tensor) -> torch.Tensor:
    """Causal hidden states ``[B, L, H]`` of ids ``[B, L]`` attending image tokens ``[B, Nv, Dv]``."""
    hidden = text_layers(model.text_encoder, input_ids, attention_mask, causal=True)
    return model.fuse(hidden, attention_mask, image_tokens, None, causal=True)


def lm_logits(model: XVLM, image_tokens: torch.Tensor, input_ids: torch.Tensor,
              attention_mask: torch.Tensor) -> torch.Tensor:
    """Next-token logits ``[B, L, V]``: position ``i`` predicts token ``i + 1``."""
    return model.mlm_head(lm_hidden(model, image_tokens, input_ids, attention_mask))


def next_token_logits(model: XVLM, image_tokens: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, V]`` of the token after unpadded ids ``[B, L]`` (generation: no cache, the prefix is re-run)."""
    mask = torch.ones_like(input_ids)
    hidden = lm_hidden(model, image_tokens, input_ids, mask)
    return model.mlm_head(hidden[:, -1])
