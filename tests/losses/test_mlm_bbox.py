"""MLM over masked positions only; box L1 + GIoU against hand formulas."""

import torch
import torch.nn.functional as F

from xvlm_lit.losses.base import StepCache
from xvlm_lit.losses.bbox import BBoxLoss, box_losses
from xvlm_lit.losses.mlm import MLMLoss
from xvlm_lit.testing import micro_xvlm, random_batch


def test_mlm_is_mean_ce_over_real_masked_tokens_only():
    model = micro_xvlm().eval()
    batch = random_batch(model, 3, texts_per_image=2, seed=1)
    out = MLMLoss()(model, batch, StepCache(model, batch))
    cache = StepCache(model, batch)
    fused = model.fuse(model.encode_text(batch.masked_ids, batch.text_mask), batch.text_mask, cache.image_tokens,
                       cache.image_mask)
    full_logits = model.mlm_head(fused)  # every position, then pick by hand
    losses = []
    for t in range(6):
        for pos, lab in zip(batch.masked_pos[t].tolist(), batch.masked_labels[t].tolist(), strict=True):
            if lab != -100:
                losses.append(F.cross_entropy(full_logits[t, pos][None], torch.tensor([lab])))
    assert torch.allclose(out["mlm_loss"], torch.stack(losses).mean(), atol=1e-5)


def hand_mlm(model, batch, rows):
    """Mean CE over the real (label != -100) masked slots of ``rows``, one slot at a time on every position's
    logits."""
    cache = StepCache(model, batch)
    fused = model.fuse(model.encode_text(batch.masked_ids, batch.text_mask), batch.text_mask, cache.image_tokens,
                       cache.image_mask)
    logits = model.mlm_head(fused)
    losses = [F.cross_entropy(logits[t, pos][None], torch.tensor([lab])) for t in rows
              for pos, lab in zip(batch.masked_pos[t].tolist(), batch.masked_labels[t].tolist(), strict=True)
              if lab != -100]
    return torch.stack(losses).mean()


def test_mlm_ignores_unmasked_label_slots_and_invalid_rows():
    model = micro_xvlm().eval()
    batch = random_batch(model, 2, texts_per_image=2, seed=2)
    base = MLMLoss()(model, batch, StepCache(model, batch))["mlm_loss"]
    batch.masked_labels[:, -1] = -100
    batch.masked_pos[:, -1] = 0  # a padded slot pointing at [CLS] changes nothing once its label is ignored
    first = MLMLoss()(model, batch, StepCache(model, batch))["mlm_loss"]
    assert torch.allclose(first, hand_mlm(model, batch, range(4)), atol=1e-5)
    assert not torch.allclose(base, first)  # dropping the last slot's labels removed real terms
    batch.valid = torch.tensor([True, False, True, True])
    no_row1 = MLMLoss()(model, batch, StepCache(model, batch))["mlm_loss"]
    assert torch.allclose(no_row1, hand_mlm(model, batch, [0, 2, 3]), atol=1e-5)
    assert not torch.allclose(first, no_row1)


def giou_by_hand(a, b):
    """Generalised IoU of two (cx, cy, w, h) boxes, written out."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = a[2] * a[3] + b[2] * b[3] - inter
    hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
    return inter / union - (hull - union) / hull


def test_box_losses_match_hand_formulas():
    pred = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.3, 0.6, 0.2, 0.5], [0.2, 0.2, 0.1, 0.1]])
    target = torch.tensor([[0.55, 0.45, 0.3, 0.5], [0.7, 0.3, 0.2, 0.2], [0.5, 0.5, 1.0, 1.0]])
    keep = torch.tensor([True, True, False])
    l1, giou = box_losses(pred, target, keep)
    exp_l1 = ((pred[:2] - target[:2]).abs().sum(1)).mean()
    exp_giou = sum(1 - giou_by_hand(pred[i].tolist(), target[i].tolist()) for i in range(2)) / 2
    assert torch.allclose(l1, exp_l1, atol=1e-6) and abs(float(giou) - exp_giou) < 1e-5


def test_identical_boxes_give_zero_and_no_box_gives_zero_not_nan():
    box = torch.tensor([[0.4, 0.5, 0.2, 0.3], [0.6, 0.6, 0.5, 0.1]])
    l1, giou = box_losses(box, box.clone(), torch.ones(2, dtype=torch.bool))
    assert float(l1) == 0 and abs(float(giou)) < 1e-5
    pred = torch.rand(2, 4, requires_grad=True)
    l1, giou = box_losses(pred, torch.zeros(2, 4), torch.zeros(2, dtype=torch.bool))
    assert float(l1) == 0 and float(giou) == 0
    (l1 + giou).backward()
    assert torch.isfinite(pred.grad).all()


def test_zero_area_target_is_dropped_per_box():
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]])
    target = torch.tensor([[0.5, 0.5, 0.0, 0.2], [0.5, 0.5, 0.3, 0.2]])
    l1, giou = box_losses(pred, target, torch.ones(2, dtype=torch.bool))
    l1_only, giou_only = box_losses(pred[1:], target[1:], torch.ones(1, dtype=torch.bool))
    assert torch.allclose(l1, l1_only) and torch.allclose(giou, giou_only) and float(giou) > 0


def test_bbox_plugin_uses_full_image_and_skips_whole_image_texts():
    model = micro_xvlm().eval()
    batch = random_batch(model, 2, texts_per_image=3, seed=3)
    out = BBoxLoss()(model, batch, StepCache(model, batch))
    cache = StepCache(model, batch)
    fused = model.fuse(cache.text_hidden, batch.text_mask, cache.full_image_tokens, None)
    pred = torch.sigmoid(model.bbox_head(fused[:, 0]))
    exp_l1 = (pred[1:] - batch.target_box[1:]).abs().sum(1).mean()  # text 0 has no box
    assert torch.allclose(out["bbox_l1_loss"], exp_l1, atol=1e-5)
    batch.has_box[:] = False
    out = BBoxLoss()(model, batch, StepCache(model, batch))
    assert float(out["bbox_l1_loss"]) == 0 and float(out["bbox_giou_loss"]) == 0
    batch.target_box = None
    assert BBoxLoss()(model, batch, StepCache(model, batch)) == {}
