"""Cross-modal (fusion) encoder: BERT layers with cross-attention to the vision tokens."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from xvlm_lit.models.attention import AddNorm, AttentionBlock, Intermediate
from xvlm_lit.models.text import BertSpec


class FusionLayer(nn.Module):
    """self-attention -> cross-attention (K/V read ``vision_width`` directly) -> FFN."""

    def __init__(self, spec: BertSpec, vision_width: int) -> None:
        super().__init__()
        h, heads = spec.hidden_size, spec.num_attention_heads
        drop, adrop, eps = spec.hidden_dropout_prob, spec.attention_probs_dropout_prob, spec.layer_norm_eps
        self.attention = AttentionBlock(h, heads, drop, adrop, eps)
        self.crossattention = AttentionBlock(h, heads, drop, adrop, eps, kv_dim=vision_width)
        self.intermediate = Intermediate(h, spec.intermediate_size)
        self.output = AddNorm(spec.intermediate_size, h, drop, eps)

    def forward(self, hidden: torch.Tensor, text_mask: torch.Tensor | None, image: torch.Tensor,
                image_mask: torch.Tensor | None, causal: bool = False) -> torch.Tensor:
        """hidden ``[B, L, H]``, image ``[B, Nv, Dv]`` -> ``[B, L, H]``."""
        hidden = self.attention(hidden, key_mask=text_mask, causal=causal)
        hidden = self.crossattention(hidden, context=image, key_mask=image_mask)
        return self.output(self.intermediate(hidden), hidden)


class FusionEncoder(nn.Module):
    """The upper BERT layers (6..11 in the base model) attending image or region tokens.

    Args:
        bert: BERT geometry (a ``BertSpec`` or a mapping of its fields).
        num_layers: number of fusion layers.
        vision_width: width ``Dv`` of the vision tokens (cross-attention K/V are ``H x Dv``).
    """

    def __init__(self, bert: BertSpec | Mapping, num_layers: int, vision_width: int) -> None:
        super().__init__()
        spec = BertSpec.of(bert)
        self.vision_width = vision_width
        self.layer = nn.ModuleList(FusionLayer(spec, vision_width) for _ in range(num_layers))
        self.grad_checkpointing = False  # recompute each layer in backward (activation memory for time)

    def forward(self, text_hidden: torch.Tensor, text_mask: torch.Tensor | None, image: torch.Tensor,
                image_mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """text_hidden ``[B, L, H]``, text_mask ``[B, L]``, image ``[B, Nv, Dv]``, image_mask ``[B, Nv]``
        (1 = attend; None = all) -> ``[B, L, H]``."""
        hidden = text_hidden
        recompute = self.grad_checkpointing and torch.is_grad_enabled()
        for layer in self.layer:
            if recompute:
                hidden = checkpoint(layer, hidden, text_mask, image, image_mask, causal, use_reentrant=False)
            else:
                hidden = layer(hidden, text_mask, image, image_mask, causal)
        return hidden
