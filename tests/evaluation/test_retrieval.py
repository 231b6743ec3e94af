"""The retrieval protocol in one process against a brute-force loop that fuses one (image, text) pair at a time."""

import json
import math

import pytest
import torch

from xvlm_lit.evaluation.retrieval import evaluate_retrieval
from xvlm_lit.testing import micro_xvlm, random_batch

NI, PER = 6, 3
INF = float("inf")


@pytest.fixture(scope="module")
def setup():
    """A micro model, 6 images with 3 captions each, the captions in shuffled order, and the brute-force
    ITC similarity and ITM logit of every (image, text) pair, each computed alone (batch of one)."""
    model = micro_xvlm(seed=0).eval()
    b = random_batch(model, NI, PER, regions=False, seed=5)
    perm = torch.randperm(NI * PER, generator=torch.Generator().manual_seed(1))
    ids, mask, t2i = b.text_ids[perm], b.text_mask[perm], b.image_index[perm]
    nt = len(ids)
    sim, itm = torch.empty(NI, nt), torch.empty(NI, nt)
    with torch.no_grad():
        for i in range(NI):
            tok = model.encode_image(b.images[i:i + 1])
            v = torch.nn.functional.normalize(model.vision_proj(tok[:, 0]), dim=-1)[0]
            for t in range(nt):
                h = model.encode_text(ids[t:t + 1], mask[t:t + 1])
                w = torch.nn.functional.normalize(model.text_proj(h[:, 0]), dim=-1)[0]
                sim[i, t] = float((v * w).sum())
                itm[i, t] = float(model.itm_head(model.fuse(h, mask[t:t + 1], tok)[:, 0])[0, 1])
    return model, b.images, ids, mask, t2i, sim, itm


def brute_scores(sim: torch.Tensor, itm: torch.Tensor, k: int, rule: str) -> torch.Tensor:
    """Each row's top-k columns by ``sim`` (Python sort) get ``itm`` (+ ``sim``), every other column ``-inf``."""
    out = torch.full_like(sim, -INF)
    for q, row in enumerate(sim.tolist()):
        for c in sorted(range(len(row)), key=lambda c: -row[c])[:k]:
            out[q, c] = itm[q, c] + (sim[q, c] if rule == "itm+itc" else 0.0)
    return sim.clone() if rule == "itc" else out


def brute_recall(scores: list[list[float]], positives: list[set[int]], k: int) -> float:
    """Percent of rows whose first positive, in score order with ties ordered non-positives first, is < k."""
    hits = 0
    for row, pos in zip(scores, positives, strict=True):
        order = sorted(range(len(row)), key=lambda c: (-row[c], c in pos))
        hits += next(i for i, c in enumerate(order) if c in pos) < k
    return 100.0 * hits / len(scores)


def brute_metrics(tr: torch.Tensor, ir: torch.Tensor, t2i: list[int], prefix: str = "") -> dict[str, float]:
    """TR from the image-query rows ``tr [Ni, Nt]`` (best of the captions), IR from ``ir [Nt, Ni]``."""
    tr_pos = [{t for t, i in enumerate(t2i) if i == q} for q in range(tr.shape[0])]
    ir_pos = [{i} for i in t2i]
    out = {f"{prefix}tr_r{k}": brute_recall(tr.tolist(), tr_pos, k) for k in (1, 5, 10)}
    return out | {f"{prefix}ir_r{k}": brute_recall(ir.tolist(), ir_pos, k) for k in (1, 5, 10)}


def run(setup, **kw):
    model, images, ids, mask, t2i, _, _ = setup
    return evaluate_retrieval(model, images, ids, mask, t2i, keep_scores=True, **kw)


@pytest.mark.parametrize("rule", ["itm", "itm+itc", "itc"])
@pytest.mark.parametrize("k", [2, 4, 100])
def test_scores_and_metrics_equal_the_pair_by_pair_brute_force(setup, rule, k):
    *_, t2i, sim, itm = setup
    res = run(setup, k=k, score=rule, batch_size=4, pair_batch_size=5)
    want_tr = brute_scores(sim, itm, k, rule)          # image queries over texts
    want_ir = brute_scores(sim.t(), itm.t(), k, rule)  # text queries over images
    torch.testing.assert_close(res.tr_scores, want_tr, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.ir_scores, want_ir, atol=1e-5, rtol=1e-5)
    assert torch.equal(res.tr_query, torch.arange(NI)) and torch.equal(res.ir_query, torch.arange(NI * PER))
    want = brute_metrics(want_tr, want_ir, t2i.tolist()) | brute_metrics(sim, sim.t(), t2i.tolist(), "itc_")
    for key, value in want.items():
        assert res.metrics[key] == pytest.approx(value, abs=1e-9), key
    assert res.metrics["r_mean"] == pytest.approx(sum(v for n, v in want.items() if not n.startswith("itc")) / 6)
    if rule == "itc":
        assert all(res.metrics[n] == res.metrics["itc_" + n] for n in ("tr_r1", "ir_r5", "r_mean"))


@pytest.mark.parametrize("rule", ["itm", "itm+itc"])
def test_k_at_least_the_candidates_reranks_every_pair(setup, rule):
    *_, sim, itm = setup
    res = run(setup, k=NI * PER, score=rule)
    want = itm + (sim if rule == "itm+itc" else 0)
    assert torch.isfinite(res.tr_scores).all() and torch.isfinite(res.ir_scores).all()
    torch.testing.assert_close(res.tr_scores, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.ir_scores, want.t(), atol=1e-5, rtol=1e-5)


def test_top_predictions_are_the_best_five_of_each_query(setup):
    *_, sim, itm = setup
    res = run(setup, k=3, score="itm")
    for top_i, top_s, full in ((res.tr_top_index, res.tr_top_score, brute_scores(sim, itm, 3, "itm")),
                               (res.ir_top_index, res.ir_top_score, brute_scores(sim.t(), itm.t(), 3, "itm"))):
        assert top_i.shape == (len(full), 5)
        want = full.sort(dim=1, descending=True).values[:, :5]
        torch.testing.assert_close(top_s, want, atol=1e-5, rtol=1e-5)
        finite = torch.isfinite(top_s)
        assert finite.sum(1).eq(3).all()  # k = 3 re-ranked, the rest -inf
        torch.testing.assert_close(full.gather(1, top_i)[finite], top_s[finite], atol=1e-5, rtol=1e-5)
    preds = json.loads(json.dumps(res.predictions()))
    assert len(preds["text_retrieval"]) == NI and len(preds["image_retrieval"]) == NI * PER
    first = preds["image_retrieval"][0]
    assert first["text"] == 0 and first["images"] == res.ir_top_index[0].tolist() and first["scores"][-1] is None


def test_itc_rule_fuses_nothing(setup, monkeypatch):
    model = setup[0]
    monkeypatch.setattr(model, "fuse", lambda *a, **k: pytest.fail("itc must not re-rank"))
    res = run(setup, score="itc")
    assert res.metrics["tr_r1"] == res.metrics["itc_tr_r1"]


def test_image_batches_in_any_order_equal_the_tensor(setup):
    model, images, ids, mask, t2i, _, _ = setup
    ref = run(setup, k=3)
    order = torch.tensor([4, 1, 5, 0, 2, 3])
    batches = [(images[order[s:s + 4]], order[s:s + 4]) for s in (0, 4)]
    got = evaluate_retrieval(model, batches, ids, mask, t2i, k=3)
    assert got.metrics == ref.metrics
    assert torch.equal(got.tr_top_index, ref.tr_top_index) and torch.equal(got.ir_top_index, ref.ir_top_index)
    torch.testing.assert_close(got.tr_top_score, ref.tr_top_score, atol=1e-5, rtol=1e-5)
    shuffled = evaluate_retrieval(model, images[order], ids, mask, t2i, image_index=order, k=3)
    assert shuffled.metrics == ref.metrics and torch.equal(shuffled.ir_top_index, ref.ir_top_index)


def test_half_precision_similarity_matrix(setup):
    *_, sim, _ = setup
    res = run(setup, score="itc", sim_dtype=torch.float16)
    torch.testing.assert_close(res.tr_scores, sim, atol=1e-3, rtol=0)  # fp16 storage, float32 scoring
    reranked = run(setup, k=4, sim_dtype=torch.float16)  # fp16 may pick other near-tied candidates
    assert torch.isfinite(reranked.tr_scores).sum(1).eq(4).all()
    assert all(0 <= v <= 100 for v in reranked.metrics.values())


def test_restores_training_mode_and_rejects_bad_inputs(setup):
    model, images, ids, mask, t2i, _, _ = setup
    model.train()
    run(setup, k=2)
    assert model.training
    model.eval()
    with pytest.raises(ValueError, match="score="):
        run(setup, score="itm_only")
    with pytest.raises(ValueError, match="k=0"):
        run(setup, k=0)
    with pytest.raises(ValueError, match="without any text"):
        evaluate_retrieval(model, images, ids, mask, t2i.clamp(max=NI - 2))
    with pytest.raises(ValueError, match="exactly once"):
        evaluate_retrieval(model, images, ids, mask, t2i, image_index=torch.tensor([0, 1, 2, 3, 4, 4]))
    with pytest.raises(ValueError, match="index the 6 images"):
        evaluate_retrieval(model, images, ids, mask, torch.where(t2i == 0, 6, t2i))


def test_metric_values_are_percentages_of_the_queries(setup):
    res = run(setup, k=2)
    for name, value in res.metrics.items():
        count = NI if "tr_" in name else NI * PER
        if name.endswith("r_mean"):
            continue
        assert math.isclose(value * count / 100, round(value * count / 100)), name
