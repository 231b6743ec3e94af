"""RecallAtK and GroundingAccuracy against brute-force / hand computations."""

import math

import pytest
import torch

from xvlm_lit.evaluation.grounding import accuracy_at_iou, mean_iou
from xvlm_lit.evaluation.metrics import GroundingAccuracy, RecallAtK
from xvlm_lit.evaluation.retrieval import chance_recall, retrieval_metrics

KS = (1, 5, 10)


def brute_rank(scores: list[float], positives: set[int]) -> int:
    """Position of the first positive when candidates are sorted by score, ties ordered non-positives first."""
    order = sorted(range(len(scores)), key=lambda c: (-scores[c], c in positives))
    return next(i for i, c in enumerate(order) if c in positives)


def brute_recall(matrix: list[list[float]], positives: list[set[int]], ks=KS) -> dict[int, float]:
    ranks = [brute_rank(row, pos) for row, pos in zip(matrix, positives, strict=True)]
    return {k: 100.0 * sum(r < k for r in ranks) / len(ranks) for k in ks}


def brute_tr_ir(scores: torch.Tensor, t2i: list[int]) -> dict[str, float]:
    """TR: rows (an image is hit if any of its captions is); IR: columns (a text's one image)."""
    ni, nt = scores.shape
    rows = scores.tolist()
    cols = scores.t().tolist()
    tr = brute_recall(rows, [{t for t in range(nt) if t2i[t] == i} for i in range(ni)])
    ir = brute_recall(cols, [{t2i[t]} for t in range(nt)])
    return {f"tr_r{k}": v for k, v in tr.items()} | {f"ir_r{k}": v for k, v in ir.items()}


@pytest.mark.parametrize("seed", range(5))
def test_recall_matches_brute_force_with_ties_and_five_captions(seed):
    g = torch.Generator().manual_seed(seed)
    ni, per = 12, 5
    t2i = torch.arange(ni).repeat_interleave(per)[torch.randperm(ni * per, generator=g)]
    scores = torch.randint(0, 4, (ni, ni * per), generator=g).float()  # few values: many ties
    got = retrieval_metrics(scores, t2i)
    want = brute_tr_ir(scores, t2i.tolist())
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    assert got["r_mean"] == pytest.approx(sum(want.values()) / 6)


def test_best_of_captions_counts_any_caption_in_top_k():
    # image 0 has captions 0, 1; caption 1 is ranked first, caption 0 last: TR@1 hit
    scores = torch.tensor([[0.0, 9.0, 1.0, 2.0], [5.0, 0.0, 6.0, 7.0]])
    t2i = torch.tensor([0, 0, 1, 1])
    assert retrieval_metrics(scores, t2i, ks=(1,))["tr_r1"] == 100.0


def test_orientation_tr_rows_ir_columns():
    """TR is perfect, IR is not: swapping them would change both numbers."""
    t2i = torch.tensor([0, 0, 1, 1])
    scores = torch.tensor([[5.0, 0.0, 0.0, 0.0],
                           [0.0, 0.0, 5.0, 0.0]])
    got = retrieval_metrics(scores, t2i, ks=(1,))
    # TR: each image's best caption scores 5, alone on top. IR: text 1 and 3 tie 0-0 between the two images
    assert got["tr_r1"] == 100.0
    assert got["ir_r1"] == 50.0


def test_constant_scores_get_the_pessimistic_ranks():
    ni, per = 4, 5
    t2i = torch.arange(ni).repeat_interleave(per)
    got = retrieval_metrics(torch.zeros(ni, ni * per), t2i)
    # TR: the 15 non-captions tie ahead of the captions (rank 15); IR: the 3 other images ahead (rank 3)
    assert got == {"tr_r1": 0.0, "tr_r5": 0.0, "tr_r10": 0.0, "ir_r1": 0.0, "ir_r5": 100.0, "ir_r10": 100.0,
                   "r_mean": 200 / 6}


def test_only_non_positive_ties_count_and_minus_inf_is_a_score():
    m = RecallAtK(ks=(1, 2, 3))
    inf = float("inf")
    scores = torch.tensor([[1.0, 1.0, 1.0, 0.0],     # three positives tie with each other only: rank 0
                           [-inf, -inf, 2.0, -inf],  # positive not re-ranked: 1 above + 2 tied non-positives
                           [3.0, 1.0, 3.0, 3.0]])    # 2 non-positives tie with the positive: rank 2
    positive = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 1, 0]], dtype=torch.bool)
    assert m.update(scores, positive) is None
    assert m.compute() == {1: pytest.approx(100 / 3), 2: pytest.approx(100 / 3), 3: pytest.approx(200 / 3)}


def test_accumulating_updates_equals_one_update():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (40, 9), generator=g).float()
    positive = torch.rand(40, 9, generator=g) < 0.3
    positive[:, 0] = True
    whole, parts = RecallAtK(), RecallAtK()
    whole.update(scores, positive)
    for s in range(0, 40, 7):
        parts.update(scores[s:s + 7], positive[s:s + 7])
    assert whole.compute() == parts.compute()
    assert int(parts.count) == 40


def test_random_scores_match_chance_recall():
    ni, per, queries = 10, 5, 3000
    nt = ni * per
    g = torch.Generator().manual_seed(0)
    tr, ir = RecallAtK(), RecallAtK()
    t2i = torch.arange(ni).repeat_interleave(per)
    tr_pos = torch.arange(ni)[:, None] == t2i[None]
    for _ in range(queries // ni):
        scores = torch.rand(ni, nt, generator=g)
        tr.update(scores, tr_pos)
        ir.update(scores.t(), tr_pos.t())
    chance = chance_recall(ni, nt)
    for k in KS:  # exact expectations from the hypergeometric law, and chance_recall, vs the simulation
        exact_tr = 100 * (1 - math.comb(nt - per, k) / math.comb(nt, k))
        assert chance[f"tr_r{k}"] == pytest.approx(exact_tr)
        assert chance[f"ir_r{k}"] == pytest.approx(100 * min(1, k / ni))
        assert tr.compute()[k] == pytest.approx(exact_tr, abs=3.5)
        assert ir.compute()[k] == pytest.approx(100 * min(1, k / ni), abs=3.5)


def test_queries_without_positive_and_nan_are_errors():
    m = RecallAtK()
    with pytest.raises(ValueError, match="without a positive"):
        m.update(torch.zeros(2, 3), torch.tensor([[1, 0, 0], [0, 0, 0]], dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        m.update(torch.tensor([[float("nan"), 0.0]]), torch.tensor([[True, False]]))
    with pytest.raises(ValueError, match="same"):
        m.update(torch.zeros(2, 3), torch.ones(3, 2, dtype=torch.bool))


BOXES = [  # (pred, target, hand IoU)
    ([0, 0, 2, 1], [0, 0, 1, 1], 0.5),          # exactly at the threshold: a hit
    ([0, 0, 4, 1], [0, 0, 2, 1], 0.5),
    ([0, 0, 2.01, 1], [0, 0, 1, 1], 1 / 2.01),  # just below
    ([0, 0, 3, 1], [0, 0, 2, 1], 2 / 3),
    ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
    ([0, 0, 1, 1], [2, 2, 3, 3], 0.0),          # disjoint
    ([0, 0, 1, 1], [1, 0, 2, 1], 0.0),          # touching edges
    ([1, 1, 1, 1], [0, 0, 2, 2], 0.0),          # zero-area prediction
    ([1, 1, 1, 1], [1, 1, 1, 1], 0.0),          # two identical zero-area boxes: empty union -> 0, not NaN
    ([1, 1, 3, 3], [2, 2, 4, 4], 1 / 7),
]


def test_grounding_accuracy_matches_hand_computed_ious():
    pred = torch.tensor([b[0] for b in BOXES], dtype=torch.float)
    target = torch.tensor([b[1] for b in BOXES], dtype=torch.float)
    ious = [b[2] for b in BOXES]
    m = GroundingAccuracy()
    m.update(pred[:4], target[:4])
    m.update(pred[4:], target[4:])
    out = m.compute()
    hits = sum(i >= 0.5 for i in ious)
    assert hits == 4
    assert out["acc"] == pytest.approx(100 * hits / len(BOXES))
    assert out["mean_iou"] == pytest.approx(100 * sum(ious) / len(ious), abs=1e-4)
    assert accuracy_at_iou(pred, target) == out["acc"]
    assert mean_iou(pred, target) == pytest.approx(out["mean_iou"], abs=1e-9)
    strict = GroundingAccuracy(threshold=0.6)
    strict.update(pred, target)
    assert strict.compute()["acc"] == pytest.approx(100 * 2 / len(BOXES))


def test_grounding_accuracy_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        GroundingAccuracy().update(torch.zeros(3, 4), torch.zeros(2, 4))
