"""NLVR2 losses: the text-assignment draw follows the reference's protocol; both plugins give finite losses and
gradients on a micro model."""

import torch

from xvlm_lit.data.tasks.nlvr2 import NLVRBatch
from xvlm_lit.losses.base import StepCache
from xvlm_lit.losses.nlvr import NLVRLoss, TextAssignmentLoss, draw_text_assignment
from xvlm_lit.testing import random_batch

from ..models.test_nlvr import micro_nlvr, pair_inputs


def test_text_assignment_draw_protocol():
    t = 400
    g = torch.Generator().manual_seed(0)
    feat = torch.nn.functional.normalize(torch.randn(t, 8, generator=g), dim=-1)
    image = torch.arange(t) // 2  # two captions per image: a caption's partner is never its own image
    valid = torch.ones(t, dtype=torch.bool)
    valid[-10:] = False
    left, right, labels = draw_text_assignment(feat, image[:, None] == image[None, :], valid, 0.07, generator=g)
    own = torch.arange(t)
    assert torch.equal(left[labels == 0], own[labels == 0]) and torch.equal(right[labels == 1], own[labels == 1])
    partner = torch.where(labels == 0, right, left)
    assert (image[partner[labels < 2]] != image[own[labels < 2]]).all()
    neither = labels == 2
    assert (image[left[neither]] != image[own[neither]]).all() and (image[right[neither]] != image[own[neither]]).all()
    assert (left[neither] != right[neither]).all()  # two different images, drawn without replacement
    assert valid[left[valid]].all() and valid[right[valid]].all()  # padding never drawn for a real caption
    share = torch.bincount(labels, minlength=3).float() / t
    torch.testing.assert_close(share, torch.tensor([1 / 3, 1 / 3, 1 / 3]), atol=0.08, rtol=0)


def test_text_assignment_prefers_similar_images():
    feat = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.99, 0.1], [-1.0, 0.0], [0.0, 1.0]]), dim=-1)
    same = torch.eye(4, dtype=torch.bool)
    g = torch.Generator().manual_seed(1)
    picks = []
    for _ in range(50):
        left, right, labels = draw_text_assignment(feat, same, torch.ones(4, dtype=torch.bool), 0.07, generator=g)
        if labels[0] == 0:
            picks.append(int(right[0]))
    assert picks and all(p == 1 for p in picks)  # image 1 is by far the most similar to image 0


def test_losses_run_and_reach_their_heads():
    ta = micro_nlvr(text_assignment=True)
    batch = random_batch(ta, 6, regions=False)
    out = TextAssignmentLoss()(ta, batch, StepCache(ta, batch))
    out["ta_loss"].backward()
    assert torch.isfinite(out["ta_loss"]) and ta.ta_head.weight.grad.abs().sum() > 0
    assert ta.vision_proj.weight.grad is None  # it only draws the pairs, without gradient (as the reference)

    model = micro_nlvr()
    images0, images1, ids, mask = pair_inputs(model)
    nb = NLVRBatch(images=images0, images_right=images1, text_ids=ids, text_mask=mask, labels=torch.tensor([1, 0, 1]))
    out = NLVRLoss()(model, nb, StepCache(model, nb))
    expected = torch.nn.functional.cross_entropy(model.pair_logits(images0, images1, ids, mask), nb.labels)
    torch.testing.assert_close(out["nlvr_loss"], expected)
    assert NLVRLoss()(model, batch, StepCache(model, batch)) == {}  # not an NLVR batch
