"""ITM: negatives never positives or same-idx, rows without negatives handled, loss vs re-computation."""

import math

import torch
import torch.nn.functional as F

from xvlm_lit.losses.base import StepCache
from xvlm_lit.losses.itm import ITMLoss, hard_negative_weights, itm_labels, sample_negatives
from xvlm_lit.testing import micro_xvlm, random_batch


def test_sampled_negatives_avoid_blocked_entries_and_follow_weights():
    w = torch.tensor([[0.0, 1.0, 3.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    torch.manual_seed(0)
    draws = torch.stack([sample_negatives(w)[0] for _ in range(4000)])
    idx, has = sample_negatives(w)
    assert has.tolist() == [True, True, False]
    assert set(draws[:, 0].tolist()) == {1, 2} and set(draws[:, 1].tolist()) == {0}
    assert abs((draws[:, 0] == 2).float().mean().item() - 0.75) < 0.03


def test_weights_zero_positives_same_idx_and_invalid_columns():
    img = F.normalize(torch.randn(4, 8), dim=-1)
    txt = F.normalize(torch.randn(4, 8), dim=-1)
    idx = torch.tensor([0, 1, 0, 2])
    valid = torch.tensor([True, True, True, False])
    w_i2t, w_t2i = hard_negative_weights(img, txt, torch.tensor(0.07), idx, valid)
    for w in (w_i2t, w_t2i):
        assert (w[0, 0] == 0) and (w[0, 2] == 0) and (w[2, 0] == 0) and (w[:, 3] == 0).all()
        assert (w[1, [0, 2]] > 0).all()
    sim = img @ txt.t() / 0.07
    assert torch.allclose(w_i2t[1, 0], F.softmax(sim[1], 0)[0] + 1e-5)


def test_rows_without_a_valid_negative_are_ignored_not_a_crash():
    model = micro_xvlm()
    batch = random_batch(model, 3, regions=False)
    batch.idx = torch.tensor([7, 7, 7])  # every pair is a positive: no negative anywhere
    out = ITMLoss()(model, batch, StepCache(model, batch))
    assert torch.isfinite(out["itm_loss"])
    labels = itm_labels(torch.ones(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool),
                        torch.zeros(3, dtype=torch.bool))
    assert labels.tolist() == [1, 1, 1] + [-100] * 6


def test_itm_loss_equals_recomputation_with_the_same_negatives():
    model = micro_xvlm().eval()
    batch = random_batch(model, 4, texts_per_image=2, seed=5)
    torch.manual_seed(11)
    got = ITMLoss()(model, batch, StepCache(model, batch))
    cache = StepCache(model, batch)
    torch.manual_seed(11)
    w_i2t, w_t2i = hard_negative_weights(cache.image_feat, cache.text_feat, model.temp, batch.idx,
                                         batch.valid_mask())
    neg_img, _ = sample_negatives(w_t2i)
    neg_txt, _ = sample_negatives(w_i2t)
    assert (neg_img != torch.arange(8)).all() and (neg_txt != torch.arange(8)).all()
    logits, labels = [], []
    tok, att, hid, tmask = cache.image_tokens, cache.image_mask, cache.text_hidden, batch.text_mask
    for i in range(8):  # one pair at a time: positive, (text, neg image), (neg text, image)
        for t, v, y in ((i, i, 1), (i, int(neg_img[i]), 0), (int(neg_txt[i]), i, 0)):
            fused = model.fuse(hid[t:t + 1], tmask[t:t + 1], tok[v:v + 1], att[v:v + 1])
            logits.append(model.itm_logits(fused)[0])
            labels.append(y)
    ref = F.cross_entropy(torch.stack(logits), torch.tensor(labels))
    assert torch.allclose(got["itm_loss"], ref, atol=1e-5)
    assert labels.count(1) == 8 and labels.count(0) == 16


def test_text_to_image_weights_are_softmax_over_images_of_the_text_column():
    """From scratch: ``w_t2i[t, i] = exp(s_it) / sum_i' exp(s_i't) + 1e-5`` (softmax down column t of the
    image-text similarity ``s``), ``w_i2t[i, t] = exp(s_it) / sum_t' exp(s_it') + 1e-5``; diagonal zeroed."""
    g = torch.Generator().manual_seed(3)
    img, txt = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    temp = 0.5
    s = [[sum(a * b for a, b in zip(img[i].tolist(), txt[t].tolist(), strict=True)) / temp for t in range(4)]
         for i in range(4)]
    want_t2i = [[0.0 if i == t else math.exp(s[i][t]) / sum(math.exp(s[j][t]) for j in range(4)) + 1e-5
                 for i in range(4)] for t in range(4)]
    want_i2t = [[0.0 if i == t else math.exp(s[i][t]) / sum(math.exp(s[i][u]) for u in range(4)) + 1e-5
                 for t in range(4)] for i in range(4)]
    w_i2t, w_t2i = hard_negative_weights(img, txt, torch.tensor(temp), None, torch.ones(4, dtype=torch.bool))
    assert torch.allclose(w_t2i, torch.tensor(want_t2i), atol=1e-6)
    assert torch.allclose(w_i2t, torch.tensor(want_i2t), atol=1e-6)
    assert not torch.allclose(w_t2i, w_i2t, atol=1e-3)  # the hand case is asymmetric: a transpose bug shows


def test_each_text_gets_its_hardest_image_and_each_image_its_hardest_text(monkeypatch):
    """Image i is most similar to text i+1 (mod 4), so at a tiny temperature text t's hard negative image is
    t-1 and image i's hard negative text is i+1 (the transposed weights would pair text t with image t+1).
    Checked on what reaches the fusion encoder, and on the loss against the hand-built pairs."""
    model = micro_xvlm().eval()
    batch = random_batch(model, 4, regions=False, seed=3)
    with torch.no_grad():
        model.temp.fill_(1e-3)
    s = torch.zeros(4, 4)
    s[torch.arange(4), (torch.arange(4) + 1) % 4] = 1.0  # s[i, t] = image_feat[i] . text_feat[t]
    cache = StepCache(model, batch)
    cache._store["image_feat"], cache._store["text_feat"] = torch.eye(4), s.t().contiguous()
    tok, att, hid, tmask = cache.image_tokens, cache.image_mask, cache.text_hidden, batch.text_mask
    seen, fuse = [], model.fuse
    monkeypatch.setattr(model, "fuse", lambda h, m, v, a: seen.append((h, v)) or fuse(h, m, v, a))
    torch.manual_seed(0)
    got = ITMLoss()(model, batch, cache)["itm_loss"]
    texts, images = seen[0]
    prev, nxt = torch.tensor([3, 0, 1, 2]), torch.tensor([1, 2, 3, 0])
    assert torch.equal(images[4:8], tok[prev]) and torch.equal(texts[4:8], hid)  # (text t, image t-1)
    assert torch.equal(texts[8:12], hid[nxt]) and torch.equal(images[8:12], tok)  # (text i+1, image i)
    monkeypatch.undo()
    logits, labels = [], []
    for k in range(4):
        for t, v, y in ((k, k, 1), (k, (k - 1) % 4, 0), ((k + 1) % 4, k, 0)):
            logits.append(model.itm_logits(model.fuse(hid[t:t + 1], tmask[t:t + 1], tok[v:v + 1], att[v:v + 1]))[0])
            labels.append(y)
    want = F.cross_entropy(torch.stack(logits), torch.tensor(labels))
    assert torch.allclose(got, want, atol=1e-6), (float(got), float(want))
