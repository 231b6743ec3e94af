"""Grad-CAM weak grounding against computations by hand: the heat map of a toy attention, box scores (the
reference's slicing loop, sqrt(area) normalisation), the random-candidate baseline, the opt-in attention
probabilities (equal to SDPA) and the gradient they carry (equal to a finite difference)."""

import math

import pytest
import torch

from xvlm_lit.evaluation.gradcam import (
    box_scores,
    gradcam_heatmap,
    pick_box,
    random_box_hit_rate,
    upsample_heatmap,
)
from xvlm_lit.models.attention import MultiHeadAttention
from xvlm_lit.models.fusion import FusionEncoder
from xvlm_lit.models.text import TextEncoder
from xvlm_lit.models.vision import VisionEncoder
from xvlm_lit.models.xvlm import XVLM
from xvlm_lit.tasks.weak_grounding import cross_attention, gradcam_maps
from xvlm_lit.testing import MICRO_BERT


# ----------------------------------------------------------------------------------------------- heat map
def test_heatmap_of_a_toy_attention_by_hand():
    # B=1, 2 heads, 3 text positions (the last one padding), 2x2 grid: 5 image tokens, CLS first
    att = torch.tensor([[[0.2, 0.4, 0.1, 0.2, 0.1], [0.0, 0.5, 0.5, 0.0, 0.0], [0.2] * 5],
                        [[0.1, 0.1, 0.1, 0.1, 0.6], [0.2] * 5, [0.2] * 5]])[None]
    grad = torch.tensor([[[5.0, 1, -1, 2, 0], [9, -3, 2, 1, 1], [10.0] * 5],
                         [[0.0, 1, 1, 1, 1], [0, 0, 0, 0, -4], [10.0] * 5]])[None]
    heat = gradcam_heatmap(att, grad, torch.tensor([[1, 1, 0]]), grid_size=2)
    # patch products with negative gradients clamped to 0 (CLS column and padded row dropped):
    #   head 0, token 0: [.4*1, .1*0, .2*2, .1*0] = [.4, 0, .4, 0];  head 0, token 1: [0, .5*2, 0, 0] = [0, 1, 0, 0]
    #   head 1, token 0: [.1, .1, .1, .6];                         head 1, token 1: [0, 0, 0, 0]
    # summed [.5, 1.1, .5, .6], averaged over 2 heads and all 3 text positions (padding included): / 6
    expected = torch.tensor([[0.5, 1.1], [0.5, 0.6]]) / 6
    assert heat.shape == (1, 2, 2)
    assert torch.allclose(heat[0], expected, atol=1e-7)


def test_heatmap_rejects_a_grid_that_does_not_fit():
    att = torch.rand(1, 2, 3, 5)
    with pytest.raises(ValueError, match="1 \\+ 3"):
        gradcam_heatmap(att, att, torch.ones(1, 3), grid_size=3)


# ------------------------------------------------------------------------------------------- box scores
def reference_scores(heat: torch.Tensor, boxes: list[list[float]], alpha: float) -> list[float]:
    """X-VLM's grounding_eval loop: heat[int(y):int(y+h), int(x):int(x+w)].sum() / (w*h) ** alpha."""
    return [float(heat[int(y):int(y + h), int(x):int(x + w)].double().sum()) / (w * h) ** alpha
            for x, y, w, h in boxes]


def test_box_scores_by_hand_sqrt_area_beats_a_huge_box():
    heat = torch.full((4, 4), 0.1)
    heat[1:3, 1:3] = 1.0
    boxes = torch.tensor([[1.0, 1.0, 2.0, 2.0],    # exactly the hot patch: 4 / sqrt(4) = 2
                          [0.0, 0.0, 4.0, 4.0],    # the whole map: (4 + 12 * 0.1) / sqrt(16) = 1.3
                          [0.0, 0.0, 1.0, 1.0],    # a cold corner: 0.1 / 1
                          [0.7, 1.2, 2.9, 1.9]])   # rows 1:3, cols 0:3 -> (4 + 2 * 0.1) / sqrt(2.9 * 1.9)
    scores = box_scores(heat, boxes)
    expected = [2.0, 1.3, 0.1, 4.2 / math.sqrt(2.9 * 1.9)]
    assert torch.allclose(scores, torch.tensor(expected, dtype=torch.float64), atol=1e-6)
    assert int(scores.argmax()) == 0
    plain = box_scores(heat, boxes, alpha=0.0)  # without the area normalisation the huge box would win
    assert int(plain.argmax()) == 1 and float(plain[1]) == pytest.approx(5.2, abs=1e-6)


def test_box_scores_equal_the_reference_slicing_loop():
    g = torch.Generator().manual_seed(0)
    heat = torch.randn(30, 40, generator=g)
    xy = torch.rand(50, 2, generator=g) * torch.tensor([40.0, 30.0])
    wh = torch.rand(50, 2, generator=g) * 25 + 0.3  # some poke out of the right / bottom edge
    boxes = torch.cat([xy, wh], 1).double()
    ours = box_scores(heat, boxes, alpha=0.5)
    theirs = reference_scores(heat, boxes.tolist(), 0.5)
    assert torch.allclose(ours, torch.tensor(theirs, dtype=torch.float64), atol=1e-9)


def test_pick_box_upsamples_and_picks_the_box_over_the_hot_cell():
    grid = torch.full((4, 4), 0.05)
    grid[1, 2] = 1.0  # image 80 x 60: the cell covers x 40..60, y 15..30
    boxes = torch.tensor([[0.0, 40.0, 20.0, 20.0], [40.0, 15.0, 20.0, 15.0], [0.0, 0.0, 80.0, 60.0]])
    best, scores = pick_box(grid, boxes, height=60, width=80)
    assert best == 1 and scores.shape == (3,)
    best_plain, _ = pick_box(grid, boxes, height=60, width=80, alpha=0.0)
    assert best_plain == 2
    flat = upsample_heatmap(torch.full((3, 3), 0.5), 50, 70)  # bicubic keeps a constant map constant
    assert flat.shape == (50, 70) and torch.allclose(flat, torch.full_like(flat, 0.5), atol=1e-6)


def test_ties_go_to_the_first_candidate():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]])
    assert pick_box(torch.ones(2, 2), boxes, 4, 4)[0] == 0


# --------------------------------------------------------------------------------------- random baseline
def test_random_candidate_baseline_by_hand():
    target = torch.tensor([0.0, 0.0, 10.0, 10.0])
    cands = torch.tensor([[0.0, 0.0, 10.0, 10.0],    # IoU 1
                          [0.0, 0.0, 10.0, 5.0],     # IoU 50 / 100 = 0.5: a hit (at the threshold)
                          [5.0, 5.0, 10.0, 10.0],    # IoU 25 / 175
                          [20.0, 20.0, 5.0, 5.0]])   # IoU 0
    assert random_box_hit_rate(cands, target) == 0.5
    assert random_box_hit_rate(cands[2:], target) == 0.0
    assert random_box_hit_rate(torch.zeros(0, 4), target) == 0.0


# ------------------------------------------------------------------------------------ attention probabilities
@pytest.mark.parametrize("causal", [False, True])
def test_kept_attention_equals_sdpa_and_is_a_distribution(causal):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, kv_dim=None if causal else 12, dropout=0.1).eval()
    hidden = torch.randn(2, 5, 16)
    context = None if causal else torch.randn(2, 7, 12)
    lk = 5 if causal else 7
    mask = torch.ones(2, lk, dtype=torch.long)
    mask[1, -3:] = 0
    ref = mha(hidden, context, mask, causal=causal)
    assert mha.last_attention is None  # the default path keeps nothing
    mha.keep_attention = True
    out = mha(hidden, context, mask, causal=causal)
    assert torch.allclose(out, ref, atol=1e-6)
    probs = mha.last_attention
    assert probs.shape == (2, 4, 5, lk)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 4, 5), atol=1e-6)
    assert (probs[1, :, :, -3:] == 0).all()
    if causal:
        assert (probs.triu(1) == 0).all()
    q = mha._split(mha.query(hidden))
    k = mha._split(mha.key(hidden if causal else context))
    manual = (q @ k.transpose(-1, -2) / math.sqrt(4)).masked_fill(~mask.bool()[:, None, None], float("-inf"))
    if causal:
        manual = manual.masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
    assert torch.allclose(probs, manual.softmax(-1), atol=1e-6)


def test_kept_attention_gives_the_same_parameter_gradients():
    torch.manual_seed(1)
    mha = MultiHeadAttention(16, 2, kv_dim=8, dropout=0.0)
    hidden, context = torch.randn(3, 4, 16), torch.randn(3, 6, 8)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    grads = []
    for keep in (False, True):
        mha.keep_attention = keep
        mha.zero_grad()
        mha(hidden, context, mask).square().sum().backward()
        grads.append([p.grad.clone() for p in mha.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert mha.last_attention.grad is not None  # retain_grad: a backward() also fills .grad


# ------------------------------------------------------------------------------------------ Grad-CAM maps
def two_layer_micro(seed: int = 0) -> XVLM:
    """A micro X-VLM (4x4 grid at 32 px) with 2 fusion layers, double precision, eval mode."""
    torch.manual_seed(seed)
    enc = VisionEncoder("swin_tiny_patch4_window7_224", 32, embed_dim=16, depths=(1, 1), num_heads=(1, 2),
                        window_size=4)
    model = XVLM(enc, TextEncoder(MICRO_BERT, 1), FusionEncoder(MICRO_BERT, 2, enc.width), embed_dim=16)
    return model.double().eval()


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(3, 3, 32, 32, generator=g, dtype=torch.float64)
    ids = torch.randint(5, 400, (3, 6), generator=g)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[1, -2:] = 0
    mask[2, -4:] = 0
    return images, ids * mask, mask


def itm_logit_with_nudge(model, images, ids, mask, layer, nudge):
    """The summed ITM positive logits with probability ``P[b, h, t, j]`` raised by ``eps`` (``nudge = (b, h, t, j,
    eps)``): the cross-attention output row t of head h gains ``eps * V[b, j, head h]``."""
    b, h, t, j, eps = nudge
    mha = cross_attention(model, layer)
    d = mha.query.out_features // mha.num_heads

    def hook(module, args, out):
        value = module.value(args[1])[b, j, h * d:(h + 1) * d]
        out = out.clone()
        out[b, t, h * d:(h + 1) * d] += eps * value
        return out

    handle = mha.register_forward_hook(hook)
    try:
        with torch.no_grad():
            fused = model.fuse(model.encode_text(ids, mask), mask, model.encode_image(images))
            return float(model.itm_logits(fused)[:, 1].sum())
    finally:
        handle.remove()


def test_gradcam_gradient_equals_a_finite_difference():
    model = two_layer_micro()
    images, ids, mask = inputs()
    mha = cross_attention(model, 0)
    mha.keep_attention = True
    fused = model.fuse(model.encode_text(ids, mask), mask, model.encode_image(images))
    probs = mha.last_attention
    (grads,) = torch.autograd.grad(model.itm_logits(fused)[:, 1].sum(), probs)
    mha.keep_attention, mha.last_attention = False, None
    eps = 1e-5
    for b, h, t, j in [(0, 0, 0, 3), (1, 1, 2, 0), (2, 0, 1, 16), (0, 1, 5, 7)]:
        up = itm_logit_with_nudge(model, images, ids, mask, 0, (b, h, t, j, eps))
        down = itm_logit_with_nudge(model, images, ids, mask, 0, (b, h, t, j, -eps))
        assert abs(float(grads[b, h, t, j])) > 1e-3  # a real gradient, not 0 == 0
        assert (up - down) / (2 * eps) == pytest.approx(float(grads[b, h, t, j]), rel=1e-4, abs=1e-8)
    heat = gradcam_maps(model, images, ids, mask, layer=0)
    assert torch.allclose(heat, gradcam_heatmap(probs.detach(), grads, mask, 4))


def test_gradcam_maps_in_inference_mode_touch_no_parameter_and_scale_with_padding():
    model = two_layer_micro()
    images, ids, mask = inputs()
    free = gradcam_maps(model, images, ids, mask, layer=0)
    with torch.inference_mode():
        inside = gradcam_maps(model, images, ids, mask, layer=0)
    assert torch.allclose(free, inside)
    assert all(p.grad is None for p in model.parameters())
    mha = cross_attention(model, 0)
    assert not mha.keep_attention and mha.last_attention is None
    assert free.shape == (3, 4, 4) and (free >= 0).all() and (free > 0).any()
    # the reference averages over the batch's padded length: sample 2 alone (2 tokens) vs in the batch (6)
    alone = gradcam_maps(model, images[2:], ids[2:, :2], mask[2:, :2], layer=0)
    assert torch.allclose(alone[0] * 2, free[2] * 6, atol=1e-12)


def test_gradcam_layer_out_of_range_is_named():
    with pytest.raises(ValueError, match="task.gradcam_layer=2"):
        cross_attention(two_layer_micro(), 2)
