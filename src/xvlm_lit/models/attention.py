"""BERT-style attention blocks on ``scaled_dot_product_attention``.

Parameter names mirror BERT's (``self.query``, ``output.dense``, ``output.LayerNorm``) so weights map 1:1 from
BERT checkpoints and from the reference X-VLM layout.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel


def cpu_attention_backend(device: torch.device):
    """Context for the encoders' SDPA calls: under CPU bf16/fp16 autocast, the math backend (batched GEMMs in bf16,
    the fastest on short BERT/Swin-window sequences: the CPU flash kernel's backward cost 26% of the tiny step);
    elsewhere (fp32, CUDA) no constraint. Exact attention either way."""
    if device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def key_padding_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """mask ``[B, Lk]`` (1 = attend) -> boolean attention mask ``[B, 1, 1, Lk]`` for SDPA, or None."""
    if mask is None:
        return None
    return mask.to(torch.bool)[:, None, None, :]


class MultiHeadAttention(nn.Module):
    """Queries from ``hidden`` (width H); keys/values from ``context`` (width ``kv_dim``, default H).

    ``keep_attention`` (default False, opt-in, e.g. for Grad-CAM): compute the probabilities explicitly,
    ``softmax(Q K^T / sqrt(d) + mask bias)`` ``[B, heads, Lq, Lk]`` (before dropout), and keep them in
    ``last_attention``, in the autograd graph (``retain_grad()`` when they require grad). The default path is
    SDPA alone and never stores anything.
    """

    def __init__(self, hidden_size: int, num_heads: int, kv_dim: int | None = None, dropout: float = 0.1) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads}")
        kv_dim = kv_dim or hidden_size
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(kv_dim, hidden_size)
        self.value = nn.Linear(kv_dim, hidden_size)
        self.dropout = dropout
        self.keep_attention = False
        self.last_attention: torch.Tensor | None = None

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, length, h = x.shape
        return x.view(b, length, self.num_heads, h // self.num_heads).transpose(1, 2)

    def forward(
        self,
        hidden: torch.Tensor,
        context: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        """hidden ``[B, Lq, H]``, context ``[B, Lk, Dk]``, key_mask ``[B, Lk]`` -> ``[B, Lq, H]``."""
        context = hidden if context is None else context
        q, k, v = self._split(self.query(hidden)), self._split(self.key(context)), self._split(self.value(context))
        mask = key_padding_bias(key_mask, q.dtype)
        if causal:
            lq, lk = q.shape[2], k.shape[2]
            tri = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()
            mask = tri if mask is None else mask & tri
        if self.keep_attention:
            out = self._explicit_attention(q, k, v, mask)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
            )
        return out.transpose(1, 2).flatten(2)

    def _explicit_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            mask: torch.Tensor | None) -> torch.Tensor:
        """SDPA written out, keeping the probabilities: q ``[B, h, Lq, d]``, k/v ``[B, h, Lk, d]``, mask bool
        broadcastable to ``[B, h, Lq, Lk]`` (True = attend) -> ``[B, h, Lq, d]``; sets ``last_attention``."""
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = scores.softmax(dim=-1)
        if torch.is_grad_enabled():
            if not probs.requires_grad:  # nothing upstream is trained: make the probabilities a leaf of the graph
                probs.requires_grad_()
            probs.retain_grad()
        self.last_attention = probs
        return F.dropout(probs, self.dropout, self.training) @ v


class AddNorm(nn.Module):
    """BERT's output sub-layer: dense -> dropout -> residual add -> LayerNorm."""

    def __init__(self, in_dim: int, hidden_size: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class AttentionBlock(nn.Module):
    """``self`` (attention) + ``output`` (AddNorm), named as in BERT."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float, attn_dropout: float, eps: float,
                 kv_dim: int | None = None) -> None:
        super().__init__()
        self.self = MultiHeadAttention(hidden_size, num_heads, kv_dim=kv_dim, dropout=attn_dropout)
        self.output = AddNorm(hidden_size, hidden_size, dropout, eps)

    def forward(self, hidden: torch.Tensor, context: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """hidden ``[B, L, H]`` -> ``[B, L, H]``."""
        return self.output(self.self(hidden, context, key_mask, causal), hidden)


class Intermediate(nn.Module):
    """BERT's FFN up-projection with GELU."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))
