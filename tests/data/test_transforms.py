"""Tests of xvlm_lit.data.transforms (image-text and box-aware region augmentation)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from xvlm_lit.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    PHOTOMETRIC_OPS,
    REFERENCE_ITC_OPS,
    ImageTextParams,
    ImageTextTransform,
    RegionAnnotation,
    RegionParams,
    RegionTransform,
    SeededRandAugment,
    box_xywh_to_cxcywh_norm,
    denormalize,
    sample_resized_crop,
    to_tensor_normalized,
)
from xvlm_lit.data.transforms_region import sample_crop_containing, select_boxes

R = 224
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
BOXES = {
    "red": (20.0, 15.0, 50.0, 40.0),
    "green": (110.0, 60.0, 40.0, 45.0),
    "blue": (50.0, 80.0, 35.0, 30.0),
}


def toy_swap(text: str) -> str:
    """A minimal left/right swapper (the real one lives in xvlm_lit.data.text)."""
    return " ".join({"left": "right", "right": "left"}.get(w, w) for w in text.split())


def coloured_image(width: int = 160, height: int = 120) -> Image.Image:
    """Grey image with one filled rectangle per colour at BOXES."""
    arr = np.full((height, width, 3), 128, dtype=np.uint8)
    for name, (x, y, w, h) in BOXES.items():
        arr[int(y) : int(y + h), int(x) : int(x + w)] = COLOURS[name]
    return Image.fromarray(arr)


def annotations() -> list[RegionAnnotation]:
    return [RegionAnnotation(BOXES[n], [f"the {n} box on the left"]) for n in COLOURS]


def colour_bbox(x: torch.Tensor, name: str) -> tuple[float, float, float, float] | None:
    """Bounding box (x, y, w, h) of the pixels of a colour in a normalised [3,H,W] tensor, or None."""
    img = denormalize(x)
    target = torch.tensor(COLOURS[name], dtype=torch.float32).view(3, 1, 1) / 255
    mask = ((img - target).abs() < 0.3).all(dim=0)
    if not mask.any():
        return None
    ys, xs = torch.nonzero(mask, as_tuple=True)
    x0, y0, x1, y1 = xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def iou_xywh(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


# ------------------------------------------------------------------------------------------ basics


def test_to_tensor_normalized_constants():
    x = to_tensor_normalized(Image.new("RGB", (8, 6), (255, 0, 255)))
    assert x.shape == (3, 6, 8) and x.dtype == torch.float32 and type(x) is torch.Tensor
    expect = [(1 - CLIP_MEAN[0]) / CLIP_STD[0], -CLIP_MEAN[1] / CLIP_STD[1], (1 - CLIP_MEAN[2]) / CLIP_STD[2]]
    assert torch.allclose(x.mean(dim=(1, 2)), torch.tensor(expect), atol=1e-5)
    assert torch.allclose(denormalize(x)[:, 0, 0], torch.tensor([1.0, 0.0, 1.0]), atol=1e-5)
    assert to_tensor_normalized(Image.new("L", (4, 4), 10)).shape == (3, 4, 4)


@pytest.mark.parametrize("train", [True, False])
def test_image_text_shape_dtype_stats(train):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 130, 3), dtype=np.uint8))
    t = ImageTextTransform(R, train=train, swap_fn=toy_swap)
    x, texts, flipped = t(img, ["a cat"], np.random.default_rng(1))
    assert x.shape == (3, R, R) and x.dtype == torch.float32
    d = denormalize(x)
    assert d.min() > -0.01 and d.max() < 1.01
    if not train:  # plain resize of uniform noise keeps the mean near 0.5
        assert 0.4 < d.mean() < 0.6
    assert isinstance(flipped, bool) and (train or not flipped)


def test_box_to_cxcywh_norm():
    out = box_xywh_to_cxcywh_norm([0.0, 56.0, 112.0, 224.0], R)
    assert torch.allclose(out, torch.tensor([0.25, 0.75, 0.5, 1.0]))
    many = box_xywh_to_cxcywh_norm(torch.tensor([[0.0, 0.0, R, R], [-10.0, 0.0, 5.0, 5.0]]), R)
    assert many.shape == (2, 4) and torch.allclose(many[0], torch.tensor([0.5, 0.5, 1.0, 1.0]))
    assert (many >= 0).all() and (many <= 1).all()


def test_train_mode_requires_rng():
    with pytest.raises(ValueError):
        ImageTextTransform(R)(coloured_image(), ["x"])
    with pytest.raises(ValueError):
        RegionTransform(R)(coloured_image(), annotations(), 0)


def test_default_ops_are_the_references_and_keep_hue():
    assert set(ImageTextTransform(R).augment.ops) == set(REFERENCE_ITC_OPS)
    for ops in (REFERENCE_ITC_OPS, PHOTOMETRIC_OPS):
        assert not {"Color", "Solarize", "Posterize", "Invert"} & set(ops)
    assert not {"ShearX", "Rotate", "TranslateX"} & set(PHOTOMETRIC_OPS)


def test_randaugment_seeded_and_photometric():
    aug = SeededRandAugment(2, 7, PHOTOMETRIC_OPS)
    drawn = [aug.sample(np.random.default_rng(s), R, R) for s in range(200)]
    names = {name for ops in drawn for name, _ in ops}
    assert names <= set(PHOTOMETRIC_OPS) and len(names) == len(PHOTOMETRIC_OPS)
    mags = {abs(v) for ops in drawn for n, v in ops if n == "Brightness"}
    assert len(mags) == 1 and mags.pop() == pytest.approx(0.9 * 7 / 10)  # the reference's M/10 scale
    assert aug.sample(random.Random(3), R, R) == aug.sample(random.Random(3), R, R)
    with pytest.raises(ValueError):
        SeededRandAugment(2, 7, ["Warp"])


def test_sample_resized_crop_in_range():
    for seed in range(100):
        c = sample_resized_crop(np.random.default_rng(seed), 120, 160, (0.2, 1.0), (3 / 4, 4 / 3))
        assert 0 <= c.top and c.top + c.height <= 120 and 0 <= c.left and c.left + c.width <= 160
        assert 0.2 * 0.9 <= c.height * c.width / (120 * 160) <= 1.0


# ------------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("make_rng", [np.random.default_rng, random.Random])
def test_same_seed_same_output(make_rng):
    img, it = coloured_image(), ImageTextTransform(R, swap_fn=toy_swap)
    rt = RegionTransform(R, swap_fn=toy_swap)
    torch_state = torch.get_rng_state()
    for seed in range(5):
        a, b = it(img, ["left"], make_rng(seed)), it(img, ["left"], make_rng(seed))
        assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
        a, b = rt(img, annotations(), 1, make_rng(seed)), rt(img, annotations(), 1, make_rng(seed))
        assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    assert torch.equal(torch_state, torch.get_rng_state()), "torch's global RNG must not be used"
    outs = [it(img, ["x"], make_rng(s))[0] for s in range(4)]
    assert not all(torch.equal(outs[0], o) for o in outs[1:])


def test_eval_mode_deterministic_and_plain_resize():
    img = coloured_image()
    it = ImageTextTransform(R, train=False, swap_fn=toy_swap)
    a, b = it(img, ["on the left"]), it(img, ["on the left"], np.random.default_rng(5))
    assert torch.equal(a[0], b[0]) and a[1] == ["on the left"] and a[2] is False
    rt = RegionTransform(R, train=False, swap_fn=toy_swap)
    (xa, anns_a, fa), (xb, anns_b, _) = rt(img, annotations(), 2), rt(img, annotations(), 2)
    assert torch.equal(xa, xb) and anns_a == anns_b and fa is False
    sx, sy = R / 160, R / 120
    for ann, name in zip(anns_a, COLOURS, strict=True):
        x, y, w, h = BOXES[name]
        assert ann.bbox == pytest.approx((x * sx, y * sy, w * sx, h * sy), abs=1e-3)
        assert ann.texts == [f"the {name} box on the left"]
        assert iou_xywh(colour_bbox(xa, name), ann.bbox) > 0.9


# ------------------------------------------------------------------------------------------ region geometry


def test_region_boxes_follow_pixels_many_seeds():
    img, rt = coloured_image(), RegionTransform(R, randaugment=False, swap_fn=toy_swap)
    anns, names = annotations(), list(COLOURS)
    for seed in range(60):
        chosen = seed % 3
        params = rt.sample(img.size, anns, chosen, np.random.default_rng(seed))
        x, kept, _ = rt.apply(img, anns, chosen, params)
        assert chosen in [a.index for a in kept]
        for ann in kept:
            found = colour_bbox(x, names[ann.index])
            assert found is not None and iou_xywh(found, ann.bbox) > 0.9, (seed, ann)
        for i in set(range(3)) - {a.index for a in kept}:  # dropped: at most half of it was visible
            bx, by, bw, bh = BOXES[names[i]]
            vis_w = max(0.0, min(bx + bw, params.left + params.width) - max(bx, params.left))
            vis_h = max(0.0, min(by + bh, params.top + params.height) - max(by, params.top))
            assert vis_w * vis_h <= 0.5 * bw * bh


def test_region_photometric_aug_keeps_boxes():
    img, rt = coloured_image(), RegionTransform(R, swap_fn=toy_swap)
    for seed in range(10):
        params = rt.sample(img.size, annotations(), 0, np.random.default_rng(seed))
        assert len(params.ops) == 2
        no_aug = RegionParams(params.top, params.left, params.height, params.width, params.flip, ())
        xa, kept_a, _ = rt.apply(img, annotations(), 0, params)
        xb, kept_b, _ = rt.apply(img, annotations(), 0, no_aug)
        assert kept_a == kept_b and xa.shape == xb.shape == (3, R, R)


def test_chosen_box_fully_contained():
    rng = np.random.default_rng(0)
    for _ in range(500):
        width, height = int(rng.integers(2, 400)), int(rng.integers(2, 400))
        x, y = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
        w, h = rng.uniform(0, width - x), rng.uniform(0, height - y)
        top, left, ch, cw = sample_crop_containing(rng, (x, y, w, h), height, width)
        assert 0 <= left <= x and x + w <= left + cw <= width and cw >= 1
        assert 0 <= top <= y and y + h <= top + ch <= height and ch >= 1


def test_chosen_box_kept_even_if_partly_outside_image():
    img = coloured_image()
    anns = [RegionAnnotation((140.0, 100.0, 60.0, 60.0), ["edge"]), *annotations()]
    rt = RegionTransform(R, randaugment=False, swap_fn=toy_swap)
    for seed in range(20):
        x, kept, _ = rt(img, anns, 0, np.random.default_rng(seed))
        assert kept[0].index == 0
        bx, by, bw, bh = kept[0].bbox
        assert bw > 0 and bh > 0 and bx >= -1e-4 and by >= -1e-4
        assert bx + bw <= R + 1e-3 and by + bh <= R + 1e-3


def test_more_than_half_rule():
    img = Image.new("RGB", (200, 100), (128, 128, 128))
    anns = [
        {"bbox": [10, 10, 30, 30], "texts": ["chosen"]},
        {"bbox": [90, 10, 40, 20], "texts": ["mostly outside"]},  # 10/40 of its width inside
        {"bbox": [70, 50, 40, 20], "texts": ["mostly inside"]},  # 30/40 inside -> clipped to width 30
        {"bbox": [80, 70, 40, 20], "texts": ["exactly half"]},  # 20/40: not *more* than half
    ]
    rt = RegionTransform(200, randaugment=False, swap_fn=toy_swap)
    _, kept, _ = rt.apply(img, anns, 0, RegionParams(top=0, left=0, height=100, width=100))
    assert [a.index for a in kept] == [0, 2]
    assert kept[0].bbox == pytest.approx((20.0, 20.0, 60.0, 60.0))  # x2 scale on both axes
    assert kept[1].bbox == pytest.approx((140.0, 100.0, 60.0, 40.0))
    boxes = torch.tensor([[90.0, 10, 40, 20], [70, 50, 40, 20]])
    keep, xyxy = select_boxes(boxes, 0, 0, 100, 100, (100, 200))
    assert keep.tolist() == [False, True] and xyxy[1].tolist() == [70.0, 50.0, 100.0, 70.0]


# ------------------------------------------------------------------------------------------ flips


def test_region_forced_flip_mirrors_boxes_and_swaps_texts():
    img = coloured_image()
    rt = RegionTransform(R, randaugment=False, swap_fn=toy_swap)
    params = RegionParams(top=0, left=0, height=120, width=160, flip=True)
    x, kept, flipped = rt.apply(img, annotations(), 0, params)
    assert flipped
    assert all(a.texts == [f"the {n} box on the right"] for a, n in zip(kept, COLOURS, strict=True))
    sx, sy = R / 160, R / 120
    bx, by, bw, bh = BOXES["red"]
    assert kept[0].bbox == pytest.approx(((160 - bx - bw) * sx, by * sy, bw * sx, bh * sy), abs=1e-3)
    for ann, name in zip(kept, COLOURS, strict=True):
        assert iou_xywh(colour_bbox(x, name), ann.bbox) > 0.9


def test_image_text_forced_flip_swaps_texts_and_pixels():
    img = coloured_image()
    it = ImageTextTransform(R, randaugment=False, swap_fn=toy_swap)
    texts = ["a dog to the left of a right hand", "nothing"]
    x, out, flipped = it.apply(img, texts, ImageTextParams(crop=None, flip=True, ops=()))
    assert flipped and out == ["a dog to the right of a left hand", "nothing"]
    red = colour_bbox(x, "red")
    assert red[0] > R / 2  # the red box was on the left half
    x2, out2, f2 = it.apply(img, texts, ImageTextParams(crop=None, flip=False, ops=()))
    assert not f2 and out2 == texts and colour_bbox(x2, "red")[0] < R / 2


def test_random_flip_rate_and_text_consistency():
    img = coloured_image(40, 30)
    it = ImageTextTransform(32, randaugment=False, swap_fn=toy_swap)
    results = [it(img, ["left"], np.random.default_rng(s)) for s in range(200)]
    assert 60 < sum(f for _, _, f in results) < 140
    assert all(t == (["right"] if f else ["left"]) for _, t, f in results)


def test_flip_mode_avoid_never_flips_left_right_texts():
    img = coloured_image(40, 30)
    it = ImageTextTransform(32, randaugment=False, flip_mode="avoid", swap_fn=toy_swap)
    assert not any(it(img, ["on the left"], np.random.default_rng(s))[2] for s in range(50))
    assert any(it(img, ["a cat"], np.random.default_rng(s))[2] for s in range(50))


def test_default_swap_fn_is_text_module():
    import xvlm_lit.data.text as text
    it = ImageTextTransform(32, randaugment=False)
    _, out, _ = it.apply(coloured_image(40, 30), ["the left cup"], ImageTextParams(None, True, ()))
    assert out == [text.swap_left_right("the left cup")] and out != ["the left cup"]
