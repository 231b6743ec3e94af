"""VQA inference with the answer decoder: the reference's answer-list ranking, and open-ended generation.

**Ranking** (:func:`rank_answers`, the reference's ``rank_answer``): the decoder reads ``[CLS]`` alone and gives the
first-token distribution (softmax over the whole vocabulary); each candidate of the answer list gets the
probability of its first token; the ``k`` candidates with the highest are kept; each is scored by
``log p(first token) - NLL(answer [SEP])``, where the sequence NLL is the sum of ``-log p`` over all the answer's
tokens, the first one included (so the first token counts twice, as in the reference); the highest score wins.

**Generation** (:func:`generate_answers`): greedy (``num_beams=1``) or beam search from ``[CLS]`` until
``[SEP]`` (at most ``max_tokens`` tokens), scoring a hypothesis by its summed log-probability. A model certain of
an answer of the list gives it under both.

The decoder is anything with ``logits(ids, mask, states, states_mask) -> [A, La, V]`` and ``sequence_nll(ids,
mask, states, states_mask) -> [A]`` (:class:`~xvlm_lit.models.answer_decoder.AnswerDecoder`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Ranking:
    """``ids [Q, k]``: answer-list indices, best first; ``scores [Q, k]``: their ``log p(first) - NLL``;
    ``first_prob [Q, k]``: their first-token probabilities."""

    ids: torch.Tensor
    scores: torch.Tensor
    first_prob: torch.Tensor

    @property
    def best(self) -> torch.Tensor:
        """``[Q]`` the chosen answer of each question (index into the answer list)."""
        return self.ids[:, 0]


def first_token_probs(decoder, states: torch.Tensor, states_mask: torch.Tensor | None, bos_id: int,
                      first_ids: torch.Tensor) -> torch.Tensor:
    """``[Q, N]``: the probability (softmax over the vocabulary) that the answer starts with ``first_ids [N]``."""
    q = states.shape[0]
    start = torch.full((q, 1), bos_id, dtype=torch.long, device=states.device)
    logits = decoder.logits(start, torch.ones_like(start), states, states_mask)[:, 0].float()  # [Q, V]
    return logits.softmax(-1).index_select(1, first_ids)


@torch.no_grad()
def rank_answers(decoder, states: torch.Tensor, states_mask: torch.Tensor | None, answer_ids: torch.Tensor,
                 answer_mask: torch.Tensor, k: int = 128, chunk_size: int = 1024) -> Ranking:
    """Rank the answer list for each question (module docstring).

    Args:
        states, states_mask: the questions' fused states ``[Q, Lq, H]`` and mask ``[Q, Lq]``.
        answer_ids, answer_mask: the answer list ``[N, La]`` as ``[CLS] answer [SEP]`` (0-padded).
        k: candidates re-scored per question (reference 128; at most ``N``).
        chunk_size: candidate sequences scored at once (bounds the ``[chunk, La, V]`` logits).
    """
    q, n = states.shape[0], answer_ids.shape[0]
    k = min(int(k), n)
    answer_ids, answer_mask = answer_ids.to(states.device), answer_mask.to(states.device)
    first = first_token_probs(decoder, states, states_mask, int(answer_ids[0, 0]), answer_ids[:, 1])
    top_prob, top_ids = first.topk(k, dim=1)  # [Q, k]
    flat = top_ids.flatten()
    ids, mask = answer_ids[flat], answer_mask[flat]
    length = int(mask.sum(1).max())
    ids, mask = ids[:, :length], mask[:, :length]
    owner = torch.arange(q, device=states.device).repeat_interleave(k)
    nll = torch.empty(q * k, device=states.device)
    for lo in range(0, q * k, chunk_size):
        sl = slice(lo, lo + chunk_size)
        rows = owner[sl]
        nll[sl] = decoder.sequence_nll(ids[sl], mask[sl], states[rows],
                                       None if states_mask is None else states_mask[rows]).float()
    scores = top_prob.log() - nll.view(q, k)
    order = scores.argsort(dim=1, descending=True, stable=True)
    return Ranking(top_ids.gather(1, order), scores.gather(1, order), top_prob.gather(1, order))


@torch.no_grad()
def generate_answers(decoder, states: torch.Tensor, states_mask: torch.Tensor | None, bos_id: int, eos_id: int,
                     max_tokens: int = 10, num_beams: int = 1, pad_id: int = 0) -> list[list[int]]:
    """Open-ended answers: per question the generated token ids after ``[CLS]``, without ``[SEP]`` (a hypothesis
    that never emits ``[SEP]`` stops at ``max_tokens`` tokens). ``num_beams=1``: greedy."""
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    q, device = states.shape[0], states.device
    beams = num_beams
    # hypotheses [Q * beams, t]; only beam 0 is alive at the start so the beams do not repeat each other
    seqs = torch.full((q * beams, 1), bos_id, dtype=torch.long, device=device)
    score = torch.zeros(q, beams, device=device)
    score[:, 1:] = float("-inf")
    done = torch.zeros(q * beams, dtype=torch.bool, device=device)
    st = states.repeat_interleave(beams, 0)
    st_mask = None if states_mask is None else states_mask.repeat_interleave(beams, 0)
    for _ in range(max_tokens):
        mask = torch.ones_like(seqs)
        logp = decoder.logits(seqs, mask, st, st_mask)[:, -1].float().log_softmax(-1)  # [Q*beams, V]
        vocab = logp.shape[-1]
        # a finished hypothesis only extends with padding, at no cost
        logp[done] = float("-inf")
        logp[done, pad_id] = 0.0
        total = (score.view(-1, 1) + logp).view(q, beams * vocab)
        score, flat = total.topk(beams, dim=1)  # [Q, beams]
        parent = flat // vocab + torch.arange(q, device=device)[:, None] * beams
        token = flat % vocab
        parent, token = parent.flatten(), token.flatten()
        seqs = torch.cat([seqs[parent], token[:, None]], 1)
        done = done[parent] | (token == eos_id)
        if bool(done.view(q, beams)[:, 0].all()) and (beams == 1 or bool(done.all())):
            break
    best = seqs.view(q, beams, -1)[:, 0, 1:]  # topk keeps the beams sorted: beam 0 is the best
    out = []
    for row in best.tolist():
        tokens = []
        for t in row:
            if t in (eos_id, pad_id):
                break
            tokens.append(t)
        out.append(tokens)
    return out
