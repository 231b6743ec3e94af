"""Whole-word / span MLM masking of SPEC section 4, done per sample on the data side.

For a text ``[CLS] w_1 .. w_{L-1}`` (unpadded, no [SEP] in pre-training):
  - ``n = min(max_masks, max(1, round(mask_prob * L)))`` ([CLS] counts in L);
  - candidate positions ``1..L-1`` are visited in shuffled order; an already chosen candidate is skipped; each other
    candidate starts a whole word (expanded left/right over ``##`` pieces) or, with probability ``span_prob``, a span
    of 2..3 tokens expanded to word boundaries; the walk stops once ``>= n`` positions are chosen; if more than ``n``
    were chosen, a random subset of ``n`` is kept;
  - each chosen position becomes [MASK] (80%), a token drawn uniformly from the whole vocabulary (10%) or stays (10%).
[CLS] (position 0) and padding are never masked.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from xvlm_lit.data.tokenizer import encode_caption, encode_captions, pad_ids, tokenize_captions

__all__ = ["MLMMasker", "encode_caption", "encode_captions", "pad_ids", "tokenize_captions"]

IGNORE_INDEX = -100

RandomSource = torch.Generator | random.Random | None


class _Draws:
    """Vector draws from a ``torch.Generator`` (or torch's global one when None) or a ``random.Random``."""

    def __init__(self, rng: RandomSource) -> None:
        self.rng = rng
        self.py = isinstance(rng, random.Random)

    def perm(self, n: int) -> list[int]:
        if self.py:
            out = list(range(n))
            self.rng.shuffle(out)
            return out
        return torch.randperm(n, generator=self.rng).tolist()

    def uniform(self, n: int) -> list[float]:
        if self.py:
            return [self.rng.random() for _ in range(n)]
        return torch.rand(n, generator=self.rng, dtype=torch.float64).tolist()

    def integers(self, low: int, high: int, n: int) -> list[int]:
        """n integers uniform in [low, high)."""
        if self.py:
            return [self.rng.randrange(low, high) for _ in range(n)]
        return torch.randint(low, high, (n,), generator=self.rng).tolist()


class MLMMasker:
    """Per-sample MLM masking with whole-word and span expansion.

    Args:
        tokenizer: a BERT wordpiece tokenizer; its vocabulary gives the ``##`` continuation pieces, [MASK] and the
            vocabulary size used for random replacements.
        mask_prob: fraction of the tokens (including [CLS]) to mask before the ``max_masks`` cap.
        max_masks: the cap ``M`` on masked positions; also the padded length of ``masked_pos``/``masked_labels``.
        span_prob: probability that a candidate starts a 2..3-token span instead of a single word.
        mask_token_prob: probability that a chosen position becomes [MASK].
        random_token_prob: probability that it becomes a uniformly random vocabulary id (else it stays unchanged).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        mask_prob: float = 0.25,
        max_masks: int = 8,
        span_prob: float = 0.2,
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
        span_sizes: tuple[int, int] = (2, 3),
    ) -> None:
        if max_masks < 1:
            raise ValueError(f"max_masks must be >= 1, got {max_masks}")
        if not 0.0 <= mask_token_prob + random_token_prob <= 1.0 or min(mask_token_prob, random_token_prob) < 0:
            raise ValueError("mask_token_prob and random_token_prob must be >= 0 and sum to at most 1")
        if not 2 <= span_sizes[0] <= span_sizes[1]:
            raise ValueError(f"span_sizes must satisfy 2 <= low <= high, got {span_sizes}")
        self.mask_prob = mask_prob
        self.max_masks = max_masks
        self.span_prob = span_prob
        self.mask_token_prob = mask_token_prob
        self.random_token_prob = random_token_prob
        self.span_sizes = span_sizes
        self.mask_token_id = int(tokenizer.mask_token_id)
        self.pad_token_id = int(tokenizer.pad_token_id or 0)
        vocab = tokenizer.get_vocab()
        self.vocab_size = max(len(tokenizer), max(vocab.values()) + 1)
        is_subword = [False] * self.vocab_size
        for token, idx in vocab.items():
            if token.startswith("##"):
                is_subword[idx] = True
        self.is_subword: list[bool] = is_subword  # is_subword[id]: id is a "##" continuation piece

    def num_to_mask(self, length: int) -> int:
        """``n = min(max_masks, max(1, round(mask_prob * length)))`` for a text of ``length`` tokens incl. [CLS]."""
        return min(self.max_masks, max(1, round(self.mask_prob * length)))

    def walk_positions(self, ids: Sequence[int], rng: RandomSource) -> tuple[list[int], int]:
        """Run the candidate walk on an unpadded text; return (chosen positions sorted, n) before the subset cut.

        The chosen set is always a union of whole words (it may hold more than ``n`` positions).
        """
        length = len(ids)
        if length < 2:
            return [], 0
        n = self.num_to_mask(length)
        sub = [self.is_subword[t] if 0 <= t < self.vocab_size else False for t in ids]
        # start_of[i]: first position (>= 1) of the word holding i; end_of[i]: one past its last position.
        start_of = list(range(length))
        for i in range(2, length):
            if sub[i]:
                start_of[i] = start_of[i - 1]
        end_of = [i + 1 for i in range(length)]
        for i in range(length - 2, 0, -1):
            if sub[i + 1]:
                end_of[i] = end_of[i + 1]

        draws = _Draws(rng)
        n_cand = length - 1
        order = draws.perm(n_cand)
        span_u = draws.uniform(n_cand)
        span_len = draws.integers(self.span_sizes[0], self.span_sizes[1] + 1, n_cand)
        chosen: set[int] = set()
        for k in range(n_cand):
            if len(chosen) >= n:
                break
            pos = order[k] + 1
            if pos in chosen:
                continue
            size = span_len[k] if span_u[k] < self.span_prob else 1
            last = min(pos + size, length) - 1
            chosen.update(range(start_of[pos], end_of[last]))
        return sorted(chosen), n

    def choose_positions(self, ids: Sequence[int], rng: RandomSource) -> list[int]:
        """Pick the positions (ascending, in ``1..len(ids)-1``, exactly ``n`` of them) to mask in an unpadded text."""
        positions, n = self.walk_positions(ids, rng)
        if len(positions) > n:
            keep = _Draws(rng).perm(len(positions))[:n]
            positions = sorted(positions[j] for j in keep)
        return positions

    def __call__(
        self, ids: Sequence[int] | torch.Tensor, generator: RandomSource = None, length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask one text.

        Args:
            ids: ``[CLS] wordpieces`` ids, list or 1-D LongTensor [L]. If it is padded, pass ``length`` = number of
                real tokens; positions ``>= length`` are never masked.
            generator: ``torch.Generator`` or ``random.Random`` (None: torch's global generator).

        Returns:
            masked_ids: LongTensor [L], the input with the chosen positions replaced.
            masked_pos: LongTensor [max_masks], chosen positions (ascending), padded with 0.
            masked_labels: LongTensor [max_masks], original ids at ``masked_pos``, padded with -100.
        """
        id_list = ids.tolist() if isinstance(ids, torch.Tensor) else [int(t) for t in ids]
        real = len(id_list) if length is None else min(int(length), len(id_list))
        positions = self.choose_positions(id_list[:real], generator)
        masked = list(id_list)
        labels = [id_list[p] for p in positions]
        if positions:
            draws = _Draws(generator)
            action_u = draws.uniform(len(positions))
            random_ids = draws.integers(0, self.vocab_size, len(positions))
            p_mask, p_rand = self.mask_token_prob, self.mask_token_prob + self.random_token_prob
            for p, u, r in zip(positions, action_u, random_ids, strict=True):
                if u < p_mask:
                    masked[p] = self.mask_token_id
                elif u < p_rand:
                    masked[p] = r
        n_pad = self.max_masks - len(positions)
        return (
            torch.tensor(masked, dtype=torch.long),
            torch.tensor(positions + [0] * n_pad, dtype=torch.long),
            torch.tensor(labels + [IGNORE_INDEX] * n_pad, dtype=torch.long),
        )

    def mask_batch(
        self, list_of_ids: Sequence[Sequence[int] | torch.Tensor], pad_to: int, generator: RandomSource = None
    ) -> dict[str, torch.Tensor]:
        """Mask unpadded texts (each truncated to ``pad_to`` first), then pad them.

        Returns:
            dict with ``masked_ids`` LongTensor [B, pad_to] (pad id), ``masked_pos`` LongTensor [B, max_masks]
            (padded 0) and ``masked_labels`` LongTensor [B, max_masks] (padded -100).
        """
        batch = len(list_of_ids)
        masked_ids = torch.full((batch, pad_to), self.pad_token_id, dtype=torch.long)
        masked_pos = torch.zeros((batch, self.max_masks), dtype=torch.long)
        masked_labels = torch.full((batch, self.max_masks), IGNORE_INDEX, dtype=torch.long)
        for i, ids in enumerate(list_of_ids):
            ids = ids[:pad_to]
            m_ids, m_pos, m_lab = self(ids, generator)
            masked_ids[i, : m_ids.numel()] = m_ids
            masked_pos[i] = m_pos
            masked_labels[i] = m_lab
        return {"masked_ids": masked_ids, "masked_pos": masked_pos, "masked_labels": masked_labels}

    def mask_padded(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, generator: RandomSource = None
    ) -> dict[str, torch.Tensor]:
        """Mask an already padded batch (``input_ids``/``attention_mask`` LongTensor [B, L], right padding).

        Returns the same dict as :meth:`mask_batch` with ``masked_ids`` [B, L].
        """
        lengths = attention_mask.sum(dim=1).tolist()
        rows = [row[: int(n)] for row, n in zip(input_ids.tolist(), lengths, strict=True)]
        return self.mask_batch(rows, input_ids.shape[1], generator)
