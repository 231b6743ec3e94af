"""Captioning with X-VLM's own network: the whole BERT as a causal language model attending the image.

As the reference (``models/model_captioning.py``: ``BertLMHeadModel`` over the 12-layer BERT, ``is_decoder=True``),
every layer's self-attention is causal (text layers and fusion layers alike), the fusion layers cross-attend the
image tokens, and the LM head is the MLM head (transform + decoder tied to the word embeddings). Nothing is added
to :class:`~xvlm_lit.models.xvlm.XVLM`: a captioning model *is* an X-VLM (its contrastive, matching and box heads
stay unused), so pre-trained checkpoints, ours or the reference's, load with the generic importer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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
    """Logits ``[B, V]`` of the token after unpadded ids ``[B, L]``, the whole prefix re-run (the reference for
    :class:`IncrementalLM`)."""
    mask = torch.ones_like(input_ids)
    hidden = lm_hidden(model, image_tokens, input_ids, mask)
    return model.mlm_head(hidden[:, -1])


def _heads(attention: nn.Module) -> int:
    """Head count of a BERT (transformers) or our self-attention module."""
    return int(getattr(attention, "num_heads", None) or attention.num_attention_heads)


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, length, h = x.shape
    return x.view(b, length, heads, h // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2).flatten(2)


class IncrementalLM:
    """Next-token logits for generation with a key/value cache: each call runs only the tokens not seen yet.

    ``lm = IncrementalLM(model, image_tokens [N, Nv, Dv]); logits = lm(ids [N, L])`` -> ``[N, V]`` for the token
    after ``ids``, equal to :func:`next_token_logits` (up to float error); ``lm.reorder(rows [N])`` re-orders the
    cached rows after a beam-search step (row ``i`` continues from old row ``rows[i]``). Every layer, BERT's text
    layers (transformers ``BertLayer``) and our fusion layers alike, is run through the same sub-module names
    (``attention.self.{query,key,value}``, ``attention.output``, ``crossattention``, ``intermediate``,
    ``output``); the image's cross-attention keys and values are computed once. Meant for evaluation mode (no
    attention dropout; a module in training mode would still apply its output dropout).
    """

    def __init__(self, model: XVLM, image_tokens: torch.Tensor) -> None:
        self.model, self.image = model, image_tokens
        self.text_layers = list(model.text_encoder.bert.encoder.layer)
        self.layers = self.text_layers + list(model.fusion_encoder.layer)
        self.cache: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.layers)
        self.cross: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.length = 0

    def _cross_kv(self, i: int, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        if i not in self.cross:
            att = layer.crossattention.self
            heads = _heads(att)
            self.cross[i] = (_split(att.key(self.image), heads), _split(att.value(self.image), heads))
        return self.cross[i]

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        new = ids[:, self.length:]
        if new.shape[1] == 0:
            raise ValueError("IncrementalLM: no new token since the last call")
        past, n_new = self.length, new.shape[1]
        hidden = self.model.text_encoder.bert.embeddings(input_ids=new, cache_length=past)
        mask = None
        if n_new > 1:  # causal among the new tokens, everything cached visible
            mask = torch.arange(past + n_new, device=ids.device)[None, :] <= (past + torch.arange(
                n_new, device=ids.device))[:, None]
        for i, layer in enumerate(self.layers):
            att = layer.attention.self
            heads = _heads(att)
            q, k, v = (_split(f(hidden), heads) for f in (att.query, att.key, att.value))
            if self.cache[i] is not None:
                k, v = torch.cat([self.cache[i][0], k], 2), torch.cat([self.cache[i][1], v], 2)
            self.cache[i] = (k, v)
            attended = layer.attention.output(_merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)), hidden)
            if i >= len(self.text_layers):
                cross = layer.crossattention.self
                ck, cv = self._cross_kv(i, layer)
                q = _split(cross.query(attended), _heads(cross))
                attended = layer.crossattention.output(_merge(F.scaled_dot_product_attention(q, ck, cv)), attended)
            hidden = layer.output(layer.intermediate(attended), attended)
        self.length = ids.shape[1]
        return self.model.mlm_head(hidden[:, -1])

    def reorder(self, rows: torch.Tensor) -> None:
        """Row ``i`` of the cache becomes old row ``rows[i]`` (beam search)."""
        self.cache = [None if c is None else (c[0].index_select(0, rows), c[1].index_select(0, rows))
                      for c in self.cache]
        self.cross = {i: (k.index_select(0, rows), v.index_select(0, rows)) for i, (k, v) in self.cross.items()}
        self.image = self.image.index_select(0, rows)
