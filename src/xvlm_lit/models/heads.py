"""Output heads: the ITM/box MLP and BERT's MLM head tied to the word embeddings."""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.bert.modeling_bert import BertOnlyMLMHead

from xvlm_lit.models.text import BertSpec


def mlp_head(in_dim: int, out_dim: int) -> nn.Sequential:
    """Linear(in, 2*in) -> LayerNorm -> GELU -> Linear(2*in, out); indices 0, 1, 3 hold weights (reference layout)."""
    hidden = 2 * in_dim
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.GELU(),
                         nn.Linear(hidden, out_dim))


class MLMHead(nn.Module):
    """BERT's MLM head (transform + decoder), decoder weight tied to ``word_embeddings``."""

    def __init__(self, spec: BertSpec, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.cls = BertOnlyMLMHead(spec.to_config(1))
        self.cls.predictions.decoder.weight = word_embeddings.weight
        self.cls.predictions.decoder.bias = self.cls.predictions.bias  # one output bias, as in BERT

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden ``[..., H]`` -> vocabulary logits ``[..., V]``."""
        return self.cls(hidden)
