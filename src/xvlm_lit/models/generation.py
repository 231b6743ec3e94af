"""Greedy decoding and beam search over a next-token function (no key/value cache: short captions).

``step(ids [N, L]) -> logits [N, V]`` gives the next-token logits of each row; a step object with a
``reorder(rows)`` method (a key/value cache, :class:`~xvlm_lit.models.caption.IncrementalLM`) is told after each
beam step which old row every new row continues. Lengths count the prompt, as the
reference's ``generate(max_length=20, min_length=5)`` (transformers 4.12) does: at most ``max_length`` tokens in
all, and end-of-sequence is forbidden while a sequence is shorter than ``min_length`` tokens.

The beam search keeps a finished hypothesis *in* the beam (frozen, its score fixed) instead of moving it to a
separate list and continuing the beam with the next-best token as transformers does; each step keeps the
``num_beams`` best of {every extension of every running beam, every finished beam} ranked by the length-normalised
score ``sum log p / generated_tokens ** length_penalty``. So with one beam it is greedy decoding exactly, and the
search stops as soon as every kept hypothesis has ended. (transformers' own ``generate`` needs a
``PreTrainedModel`` with a cache-aware forward; it is not used here.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Step = Callable[[torch.Tensor], torch.Tensor]


def _check(prompt: torch.Tensor, max_length: int, min_length: int) -> None:
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be [B, P] with P >= 1, got {tuple(prompt.shape)}")
    if max_length <= prompt.shape[1]:
        raise ValueError(f"max_length={max_length} leaves no room after the {prompt.shape[1]}-token prompt")
    if min_length > max_length:
        raise ValueError(f"min_length={min_length} > max_length={max_length}")


def _log_probs(step: Step, ids: torch.Tensor, min_length: int, eos_id: int) -> torch.Tensor:
    logp = step(ids).float().log_softmax(-1)
    if ids.shape[1] < min_length:  # transformers' MinLengthLogitsProcessor: cur_len < min_length
        logp[:, eos_id] = float("-inf")
    return logp


@torch.no_grad()
def greedy_search(step: Step, prompt: torch.Tensor, max_length: int, min_length: int, eos_id: int,
                  pad_id: int = 0) -> torch.Tensor:
    """``[B, P]`` prompt -> ``[B, <= max_length]`` ids (the prompt included; after EOS, ``pad_id``)."""
    _check(prompt, max_length, min_length)
    ids = prompt
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    while ids.shape[1] < max_length and not done.all():
        token = _log_probs(step, ids, min_length, eos_id).argmax(-1)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        ids = torch.cat([ids, token[:, None]], dim=1)
        done = done | (token == eos_id)
    return ids


@torch.no_grad()
def beam_search(step: Step, prompt: torch.Tensor, num_beams: int, max_length: int, min_length: int, eos_id: int,
                pad_id: int = 0, length_penalty: float = 1.0) -> torch.Tensor:
    """``[B, P]`` prompt -> the best hypothesis per row ``[B, <= max_length]`` (prompt included, ``pad_id`` after
    EOS). ``step`` is called on ``B * num_beams`` rows ordered batch-major (row ``b * num_beams + k``)."""
    _check(prompt, max_length, min_length)
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    b, p = prompt.shape
    k, device = num_beams, prompt.device
    ids = prompt.repeat_interleave(k, dim=0)  # [B*K, P]
    score = torch.full((b, k), float("-inf"), device=device)
    score[:, 0] = 0.0  # identical beams at the start: expand only the first
    done = torch.zeros(b, k, dtype=torch.bool, device=device)

    def norm(total: torch.Tensor, generated: int | torch.Tensor) -> torch.Tensor:
        gen = torch.as_tensor(generated, dtype=torch.float32, device=device).clamp_min(1)
        return total / gen ** length_penalty

    generated = torch.zeros(b, k, dtype=torch.long, device=device)  # tokens generated per beam, EOS included
    while ids.shape[1] < max_length and not done.all():
        logp = _log_probs(step, ids, min_length, eos_id).view(b, k, -1)  # [B, K, V]
        vocab = logp.shape[-1]
        extend = score[..., None] + logp  # [B, K, V]
        extend = extend.masked_fill(done[..., None], float("-inf"))
        keys = torch.cat([norm(extend, ids.shape[1] - p + 1).view(b, -1),
                          torch.where(done, norm(score, generated), torch.full_like(score, float("-inf")))], 1)
        top = keys.topk(k, dim=1).indices  # [B, K] over K*V extensions then K frozen beams
        frozen = top >= k * vocab
        parent = torch.where(frozen, top - k * vocab, top // vocab)
        token = torch.where(frozen, torch.full_like(top, pad_id), top % vocab)
        rows = (torch.arange(b, device=device)[:, None] * k + parent).view(-1)
        reorder = getattr(step, "reorder", None)
        if reorder is not None:  # a cached step function follows the beams
            reorder(rows)
        ids = torch.cat([ids[rows], token.view(-1, 1)], dim=1)
        flat_extend = extend.view(b, -1)
        score = torch.where(frozen, score.gather(1, parent), flat_extend.gather(1, top.clamp_max(k * vocab - 1)))
        generated = torch.where(frozen, generated.gather(1, parent), generated.gather(1, parent) + 1)
        done = frozen | (token == eos_id)
    best = norm(score, generated).argmax(1)  # [B]
    return ids.view(b, k, -1)[torch.arange(b, device=device), best]
