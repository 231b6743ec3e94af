"""Captioning network and decoding: causal masks, the key/value cache, beam search vs greedy."""

import pytest
import torch

from xvlm_lit.models.caption import IncrementalLM, lm_logits, next_token_logits, text_layers
from xvlm_lit.models.generation import beam_search, greedy_search
from xvlm_lit.testing import micro_xvlm

EOS, PAD = 2, 0


def model_and_image(seed: int = 0, n: int = 3):
    model = micro_xvlm(seed=seed).eval()
    with torch.no_grad():  # a sharper LM than the init's, so decoding choices are not all ties near uniform
        model.mlm_head.cls.predictions.transform.dense.weight.mul_(8)
        tokens = model.encode_image(torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
    return model, tokens


def ids_batch(n: int = 3, length: int = 6, seed: int = 0) -> torch.Tensor:
    ids = torch.randint(5, 400, (n, length), generator=torch.Generator().manual_seed(seed))
    ids[:, 0] = 1
    return ids


def test_non_causal_text_layers_equal_the_text_encoder():
    model, _ = model_and_image()
    ids = ids_batch()
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0
    torch.testing.assert_close(text_layers(model.text_encoder, ids, mask), model.encode_text(ids, mask))


def test_causal_lm_never_looks_ahead():
    model, image = model_and_image()
    ids = ids_batch()
    mask = torch.ones_like(ids)
    changed = ids.clone()
    changed[:, 4:] = 7
    with torch.no_grad():
        a, b = lm_logits(model, image, ids, mask), lm_logits(model, image, changed, mask)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_cached_steps_equal_recomputing_the_prefix_and_follow_reordering():
    model, image = model_and_image()
    ids = ids_batch(length=4)
    lm = IncrementalLM(model, image)
    torch.testing.assert_close(lm(ids), next_token_logits(model, image, ids), rtol=1e-4, atol=1e-5)
    for step in range(3):
        rows = torch.tensor([2, 0, 0]) if step == 1 else torch.arange(3)
        lm.reorder(rows)
        ids = torch.cat([ids[rows], torch.randint(5, 400, (3, 1))], 1)
        torch.testing.assert_close(lm(ids), next_token_logits(model, image[rows] if step >= 1 else image, ids),
                                   rtol=1e-4, atol=1e-5)
        image = image[rows]


def test_beam_search_with_one_beam_equals_greedy_decoding():
    model, image = model_and_image(seed=3, n=4)
    prompt = torch.tensor([[1, 9, 17]]).expand(4, -1)
    for min_len in (3, 8):
        greedy = greedy_search(IncrementalLM(model, image), prompt, 14, min_len, EOS, PAD)
        beam = beam_search(IncrementalLM(model, image), prompt, 1, 14, min_len, EOS, PAD)
        recomputed = greedy_search(lambda ids: next_token_logits(model, image, ids), prompt, 14, min_len, EOS, PAD)
        assert torch.equal(beam, greedy) and torch.equal(greedy, recomputed)


def markov_step(table: torch.Tensor):
    """Next-token logits that depend only on the last token: ``table[last]`` (log-probabilities)."""
    return lambda ids: table[ids[:, -1]]


def test_beam_search_finds_the_better_sequence_greedy_misses():
    # from token 1: "3" (p .6) then only poor continuations; "4" (p .4) then EOS almost surely
    lp = torch.full((6, 6), -30.0)
    lp[1, 3], lp[1, 4] = torch.tensor(0.6).log(), torch.tensor(0.4).log()
    lp[3, EOS], lp[3, 5] = torch.tensor(0.3).log(), torch.tensor(0.3).log()
    lp[3, 3] = torch.tensor(0.4).log()
    lp[4, EOS] = 0.0
    lp[5, EOS] = 0.0
    prompt = torch.tensor([[1]])
    greedy = greedy_search(markov_step(lp), prompt, 4, 1, EOS, PAD)
    best = beam_search(markov_step(lp), prompt, 3, 4, 1, EOS, PAD)
    assert greedy[0, :2].tolist() == [1, 3]
    assert best[0].tolist()[:3] == [1, 4, EOS]


def test_lengths_count_the_prompt_and_min_length_blocks_eos():
    lp = torch.full((6, 6), -5.0)
    lp[:, 4] = -4.0
    lp[:, EOS] = 0.0  # EOS always the most likely
    prompt = torch.tensor([[1, 3, 3]])
    def strip(row: torch.Tensor) -> list[int]:  # padding after EOS (a frozen beam waits for the others)
        out = row.tolist()
        while out[-1] == PAD:
            out.pop()
        return out

    for search in (greedy_search, lambda *a: beam_search(a[0], a[1], 3, *a[2:])):
        # EOS is forbidden while the sequence (prompt included) is shorter than min_length (transformers' rule)
        assert strip(search(markov_step(lp), prompt, 9, 5, EOS, PAD)[0]) == [1, 3, 3, 4, 4, EOS]
        assert strip(search(markov_step(lp), prompt, 9, 1, EOS, PAD)[0]) == [1, 3, 3, EOS]
    no_eos = lp.clone()
    no_eos[:, EOS] = -50.0
    for search in (greedy_search, lambda *a: beam_search(a[0], a[1], 3, *a[2:])):
        assert search(markov_step(no_eos), prompt, 9, 1, EOS, PAD)[0].tolist() == [1, 3, 3, 4, 4, 4, 4, 4, 4]
    with pytest.raises(ValueError, match="no room"):
        greedy_search(markov_step(lp), prompt, 3, 1, EOS, PAD)
