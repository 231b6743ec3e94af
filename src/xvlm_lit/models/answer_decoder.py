"""The VQA answer decoder: a causal BERT language model cross-attending the question's fused states.

Each layer is shaped like a fusion layer (:class:`~xvlm_lit.models.fusion.FusionLayer`: causal self-attention ->
cross-attention -> FFN) with its cross-attention keys/values reading ``hidden``-wide question states instead of
vision tokens. With BERT's embeddings in front and BERT's LM head (tied to the decoder's own word embeddings) on
top, it is the reference's ``text_decoder`` (a ``BertLMHeadModel`` with ``fusion_layer=0``).

Initialisation from a pre-trained X-VLM (SPEC section 8) is done by the checkpoint key map
(:mod:`xvlm_lit.checkpoints.vqa_keymap`): decoder layer ``i`` <- fusion layer ``i``, embeddings <- the text
embeddings, head <- the MLM head; the cross-attention keys/values stay at this module's initialisation (the
pre-trained ones read vision tokens of another width).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.bert.modeling_bert import BertEmbeddings

from xvlm_lit.models.fusion import FusionLayer
from xvlm_lit.models.heads import MLMHead
from xvlm_lit.models.text import BertSpec

#: the decoder's parameters that no pre-trained weight feeds (trained at the higher lr, as the reference's
#: ``init_params``): the cross-attention keys and values of every layer
NEW_DECODER_PARAMETER = re.compile(r"(?:.*\.)?layer\.\d+\.crossattention\.self\.(key|value)\.(weight|bias)")


class AnswerDecoder(nn.Module):
    """Embeddings + ``num_layers`` causal fusion-shaped layers + the tied LM head.

    Args:
        bert: BERT geometry (the same as the encoder's: the weights are copied from it).
        num_layers: decoder layers (the reference: as many as the fusion layers, 6).

    Inputs of every method: answer ids ``[A, La]`` (``[CLS] answer [SEP]``, 0-padded) with their mask, and the
    question states ``[A, Lq, H]`` (one row per answer) with their mask ``[A, Lq]``.
    """

    def __init__(self, bert: BertSpec | Mapping, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"the answer decoder needs at least one layer, got {num_layers}")
        self.spec = BertSpec.of(bert)
        self.embeddings = BertEmbeddings(self.spec.to_config(num_layers))
        self.layer = nn.ModuleList(FusionLayer(self.spec, self.spec.hidden_size) for _ in range(num_layers))
        self.lm_head = MLMHead(self.spec, self.embeddings.word_embeddings)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """BERT's initialisation (normal(0, initializer_range), zero biases, unit LayerNorms), as the reference's
        freshly built decoder; only the cross-attention keys/values keep it after a pre-trained import."""
        std = self.spec.initializer_range
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.lm_head.cls.predictions.bias)
        self.word_embeddings.weight[self.spec.pad_token_id].zero_()  # tied to the head's output weight

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None, states: torch.Tensor,
                states_mask: torch.Tensor | None) -> torch.Tensor:
        """Hidden states ``[A, La, H]`` (position ``t`` sees answer tokens ``0..t`` and the whole question)."""
        hidden = self.embeddings(input_ids=ids)
        for layer in self.layer:
            hidden = layer(hidden, mask, states, states_mask, causal=True)
        return hidden

    def logits(self, ids: torch.Tensor, mask: torch.Tensor | None, states: torch.Tensor,
               states_mask: torch.Tensor | None) -> torch.Tensor:
        """Next-token logits ``[A, La, V]``: row ``t`` predicts token ``t + 1``."""
        return self.lm_head(self(ids, mask, states, states_mask))

    def sequence_nll(self, ids: torch.Tensor, mask: torch.Tensor, states: torch.Tensor,
                     states_mask: torch.Tensor | None) -> torch.Tensor:
        """``[A]``: the sum over the answer's tokens after the first (``answer [SEP]``) of ``-log p(token |
        earlier tokens, question)``; padding contributes nothing (the reference's per-sequence loss)."""
        logits = self.logits(ids, mask, states, states_mask)[:, :-1].float()
        return token_nll(logits, ids[:, 1:], mask[:, 1:])


def token_nll(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """logits ``[A, T, V]``, targets/mask ``[A, T]`` -> ``[A]`` summed ``-log p`` of the real targets."""
    labels = targets.masked_fill(mask == 0, -100)
    nll = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
    return nll.view(labels.shape).sum(1)
