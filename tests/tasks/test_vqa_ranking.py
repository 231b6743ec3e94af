"""VQA inference and loss: the reference's ranking protocol against a brute-force computation over every candidate,
the weighted answer loss against per-question decoding, generation (greedy, beam), and ranking == generation when
the model is certain of an answer."""

import math

import pytest
import torch
from torch import nn

from xvlm_lit.evaluation.vqa_inference import first_token_probs, generate_answers, rank_answers
from xvlm_lit.losses.base import StepCache
from xvlm_lit.losses.vqa import VQALoss
from xvlm_lit.models.answer_decoder import token_nll
from xvlm_lit.testing_vqa import CLS, SEP, micro_answers, micro_vqa, micro_vqa_batch


def question_states(model, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = model.image_size
    ids = torch.randint(5, 400, (n, 5), generator=g)
    ids[:, 0] = CLS
    mask = torch.ones_like(ids)
    mask[1, 3:] = 0
    ids = ids * mask
    with torch.no_grad():
        states = model.encode_question(torch.randn(n, 3, r, r, generator=g), ids, mask)
    return states, mask


def brute_force(decoder, states, smask, ids, mask, k):
    """Per question: every candidate's log p(first) - NLL, each decoded alone (unpadded); the winner among the
    k candidates with the highest first-token probability."""
    best, all_scores = [], []
    with torch.no_grad():
        for q in range(states.shape[0]):
            st, sm = states[q:q + 1], smask[q:q + 1]
            start = decoder.logits(torch.tensor([[CLS]]), None, st, sm)[0, 0].softmax(-1)
            scores, firsts = [], []
            for c in range(ids.shape[0]):
                n = int(mask[c].sum())
                seq = ids[c:c + 1, :n]
                logp = decoder.logits(seq, None, st, sm)[0].log_softmax(-1)
                nll = -sum(float(logp[t - 1, seq[0, t]]) for t in range(1, n))
                firsts.append(float(start[seq[0, 1]]))
                scores.append(math.log(firsts[-1]) - nll)
            allowed = sorted(range(len(firsts)), key=lambda c: -firsts[c])[:k]
            best.append(max(allowed, key=lambda c: scores[c]))
            all_scores.append(scores)
    return best, all_scores


@pytest.mark.parametrize("k", [5, 20])
def test_ranking_equals_brute_force(k):
    model = micro_vqa(seed=1).eval()
    states, smask = question_states(model)
    ids, mask = micro_answers(20, max_len=3, seed=2)
    ranking = rank_answers(model.answer_decoder, states, smask, ids, mask, k=k, chunk_size=7)
    best, scores = brute_force(model.answer_decoder, states, smask, ids, mask, k)
    assert ranking.best.tolist() == best
    assert ranking.ids.shape == (4, k)
    for q in range(4):
        got = ranking.scores[q].tolist()
        assert got == sorted(got, reverse=True)
        for c, s in zip(ranking.ids[q].tolist(), got, strict=True):
            assert s == pytest.approx(scores[q][c], abs=1e-4)
    same = rank_answers(model.answer_decoder, states, smask, ids, mask, k=k, chunk_size=1000)
    assert torch.equal(same.ids, ranking.ids)


def test_first_token_probabilities_are_over_the_whole_vocabulary():
    model = micro_vqa(seed=1).eval()
    states, smask = question_states(model)
    with torch.no_grad():
        every = first_token_probs(model.answer_decoder, states, smask, CLS, torch.arange(400))
    assert torch.allclose(every.sum(1), torch.ones(4), atol=1e-5)


def test_vqa_loss_is_weighted_summed_nll_over_questions():
    model = micro_vqa(seed=0).eval()
    batch = micro_vqa_batch(model, questions=3, answers_per_question=(2, 1, 3))
    out = VQALoss()(model, batch, StepCache(model, batch))
    want = 0.0
    with torch.no_grad():
        for a in range(batch.answer_ids.shape[0]):
            q = int(batch.answer_question[a])
            n = int(batch.text_mask[q].sum())
            st = model.encode_question(batch.images[q:q + 1], batch.text_ids[q:q + 1, :n], batch.text_mask[q:q + 1, :n])
            m = int(batch.answer_mask[a].sum())
            nll = model.answer_decoder.sequence_nll(batch.answer_ids[a:a + 1, :m], batch.answer_mask[a:a + 1, :m],
                                                    st, None)
            want += float(batch.answer_weights[a]) * float(nll)
    assert float(out["vqa_loss"].detach()) == pytest.approx(want / 3, rel=1e-4)
    out["vqa_loss"].backward()
    assert model.answer_decoder.layer[0].crossattention.self.key.weight.grad is not None
    assert model.vision_encoder.backbone.patch_embed.proj.weight.grad is not None


class MarkovDecoder(nn.Module):
    """A decoder whose next-token distribution depends on the last token only (``table[prev] -> probs``)."""

    def __init__(self, transitions: dict[int, dict[int, float]], vocab: int = 8) -> None:
        super().__init__()
        table = torch.full((vocab, vocab), 1e-9)
        for prev, nxt in transitions.items():
            for tok, p in nxt.items():
                table[prev, tok] = p
        self.register_buffer("logp", (table / table.sum(1, keepdim=True)).log())

    def logits(self, ids, mask, states, states_mask):
        return self.logp[ids]

    def sequence_nll(self, ids, mask, states, states_mask):
        return token_nll(self.logits(ids, mask, states, states_mask)[:, :-1], ids[:, 1:], mask[:, 1:])


A, B, C = 3, 4, 5
CHAIN = {CLS: {A: 0.5, B: 0.4, C: 0.1}, A: {B: 0.4, C: 0.35, SEP: 0.25}, B: {SEP: 0.9, C: 0.1}, C: {SEP: 1.0}}


def answers(*seqs):
    ids = torch.zeros(len(seqs), 5, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s) + 2] = torch.tensor([CLS, *s, SEP])
    return ids, (ids > 0).long()


def test_greedy_and_beam_search():
    dec, states = MarkovDecoder(CHAIN), torch.zeros(1, 1, 4)
    assert generate_answers(dec, states, None, CLS, SEP, max_tokens=5) == [[A, B]]  # 0.5 * 0.4 * 0.9 = 0.18
    assert generate_answers(dec, states, None, CLS, SEP, max_tokens=5, num_beams=2) == [[B]]  # 0.4 * 0.9 = 0.36
    assert generate_answers(dec, states, None, CLS, SEP, max_tokens=1) == [[A]]  # cut at max_tokens


def test_ranking_keeps_the_top_k_first_tokens_then_rescores():
    dec, states = MarkovDecoder(CHAIN), torch.zeros(1, 1, 4)
    ids, mask = answers([A, B], [B], [C], [A])
    assert rank_answers(dec, states, None, ids, mask, k=4).best.tolist() == [1]  # "B": 0.4 * 0.36
    # k=2 keeps the two candidates starting with A (0.5 > 0.4): "A B" (0.5 * 0.18) beats "A" (0.5 * 0.125)
    ranking = rank_answers(dec, states, None, ids, mask, k=2)
    assert ranking.best.tolist() == [0] and sorted(ranking.ids[0].tolist()) == [0, 3]
    assert ranking.scores[0, 0] == pytest.approx(math.log(0.5) + math.log(0.5 * 0.4 * 0.9), abs=1e-5)


def test_ranking_counts_the_first_token_twice_as_the_reference():
    # X: 0.6 then [SEP] 0.5 (sequence 0.30); Y: 0.35 then [SEP] 0.9 (sequence 0.315, the more probable answer).
    # log p(first) - NLL = 2 log p(first) + log p(rest): X 0.6 * 0.30 = 0.18 > Y 0.35 * 0.315 = 0.11.
    dec = MarkovDecoder({CLS: {A: 0.6, B: 0.35, C: 0.05}, A: {SEP: 0.5, C: 0.5}, B: {SEP: 0.9, C: 0.1}})
    ids, mask = answers([A], [B])
    assert rank_answers(dec, torch.zeros(1, 1, 4), None, ids, mask, k=2).best.tolist() == [0]
    assert generate_answers(dec, torch.zeros(1, 1, 4), None, CLS, SEP, num_beams=2) == [[B]]


def test_ranking_and_generation_agree_when_the_model_is_certain():
    torch.manual_seed(0)
    model = micro_vqa(seed=5)
    g = torch.Generator().manual_seed(8)
    r = model.image_size
    images = torch.randn(3, 3, r, r, generator=g)
    q_ids = torch.randint(5, 400, (3, 5), generator=g)
    q_ids[:, 0] = CLS
    q_mask = torch.ones_like(q_ids)
    ids, mask = micro_answers(16, max_len=3, seed=9)
    target = torch.tensor([3, 7, 12])  # one answer per question, two or more tokens long for most
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        states = model.encode_question(images, q_ids, q_mask)
        nll = model.answer_decoder.sequence_nll(ids[target], mask[target], states, q_mask)
        opt.zero_grad()
        nll.sum().backward()
        opt.step()
        if float(nll.detach().max()) < 5e-3:
            break
    model.eval()
    with torch.no_grad():
        states = model.encode_question(images, q_ids, q_mask)
        certainty = (-model.answer_decoder.sequence_nll(ids[target], mask[target], states, q_mask)).exp()
    assert certainty.min() > 0.99, certainty
    ranked = rank_answers(model.answer_decoder, states, q_mask, ids, mask, k=4).best
    assert ranked.tolist() == target.tolist()
    for beams in (1, 3):
        generated = generate_answers(model.answer_decoder, states, q_mask, CLS, SEP, max_tokens=6, num_beams=beams)
        assert generated == [ids[t, 1:int(mask[t].sum()) - 1].tolist() for t in target.tolist()]
