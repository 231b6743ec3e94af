"""Text encoder: the first N layers of a BERT (transformers ``BertModel``, SDPA attention)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from transformers import BertConfig, BertModel


@dataclass(frozen=True)
class BertSpec:
    """Geometry shared by the text and fusion halves of one BERT (defaults: bert-base-uncased)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02

    @classmethod
    def of(cls, value: BertSpec | Mapping) -> BertSpec:
        """Build from a mapping (e.g. a Hydra node), naming any unknown key."""
        if isinstance(value, BertSpec):
            return value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"model.bert: unknown key(s) {unknown}; valid keys are {sorted(known)}")
        return cls(**dict(value))

    def to_config(self, num_layers: int) -> BertConfig:
        return BertConfig(num_hidden_layers=num_layers, attn_implementation="sdpa", **asdict(self))


class TextEncoder(nn.Module):
    """Embeddings + the first ``num_layers`` BERT layers (``BertModel`` without pooler)."""

    def __init__(self, bert: BertSpec | Mapping, num_layers: int) -> None:
        super().__init__()
        self.spec = BertSpec.of(bert)
        self.bert = BertModel(self.spec.to_config(num_layers), add_pooling_layer=False)

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids ``[B, L]``, attention_mask ``[B, L]`` -> hidden states ``[B, L, H]``."""
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
