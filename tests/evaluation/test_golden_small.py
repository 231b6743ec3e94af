"""Hand-computed golden values on tiny cases: chance figures, the ITM re-rank of the top-k, Acc@IoU at the
threshold, the best constant box."""

import pytest
import torch

from xvlm_lit.evaluation.grounding import accuracy_at_iou, best_constant_box
from xvlm_lit.evaluation.metrics import RecallAtK
from xvlm_lit.evaluation.retrieval import apply_score_rule, chance_recall

INF = float("inf")


def test_chance_recall_two_images_four_texts():
    # TR@1: 2 of the 4 texts are the image's: 1/2. TR@2: miss = 2/4 * 1/3 = 1/6. IR@K = K / 2 images.
    got = chance_recall(2, 4, ks=(1, 2))
    assert got == pytest.approx({"tr_r1": 50.0, "tr_r2": 100 * 5 / 6, "ir_r1": 50.0, "ir_r2": 100.0})


def test_itm_rerank_scores_only_the_top_k_candidates():
    sim = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.2, 0.8]])
    cand = torch.tensor([[1, 2], [2, 0]])  # each query's ITC top-2
    itm = torch.tensor([[-1.0, 2.0], [0.5, 0.4]])
    assert torch.equal(apply_score_rule(sim, cand, itm, "itc"), sim)
    assert torch.equal(apply_score_rule(sim, cand, itm, "itm"), torch.tensor([[-INF, -1.0, 2.0], [0.4, -INF, 0.5]]))
    both = apply_score_rule(sim, cand, itm, "itm+itc")
    assert torch.allclose(both, torch.tensor([[-INF, -0.1, 2.5], [0.7, -INF, 1.3]]))
    positive = torch.tensor([[False, True, False], [False, False, True]])
    itc_r1, itm_r1 = RecallAtK(ks=(1,)), RecallAtK(ks=(1,))
    itc_r1.update(sim, positive)
    itm_r1.update(apply_score_rule(sim, cand, itm, "itm"), positive)
    assert itc_r1.compute() == {1: 100.0}  # ITC ranks both positives first
    assert itm_r1.compute() == {1: 50.0}  # ITM prefers candidate 2 for query 0: the re-rank changed R@1


def test_acc_at_iou_counts_exactly_the_threshold_as_a_hit():
    target = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    pred = torch.tensor([[0.0, 0.0, 2.0, 1.0],    # IoU 1/2: hit
                         [0.0, 0.0, 1.0, 0.49],   # IoU 0.49: miss
                         [2.0, 2.0, 3.0, 3.0]])   # disjoint: miss
    assert accuracy_at_iou(pred, target) == pytest.approx(100 / 3)
    assert accuracy_at_iou(pred, target, threshold=0.4) == pytest.approx(200 / 3)


def test_best_constant_box_covers_the_majority_cluster():
    a, b = [0.25, 0.25, 0.3, 0.3], [0.75, 0.75, 0.2, 0.2]  # disjoint: no box has IoU >= 0.5 with both
    box, acc = best_constant_box(torch.tensor([a, a, a, b]))
    assert acc == pytest.approx(75.0)
    ax = torch.tensor([a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2])
    bx = torch.tensor([box[0] - box[2] / 2, box[1] - box[3] / 2, box[0] + box[2] / 2, box[1] + box[3] / 2])
    assert bx.min() >= 0 and bx.max() <= 1  # returned as it was scored: clipped to the image
    assert accuracy_at_iou(bx[None], ax[None]) == 100.0
    _, one = best_constant_box(torch.tensor([b]))
    assert one == 100.0
