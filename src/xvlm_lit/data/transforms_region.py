"""Box-aware region augmentation (SPEC section 5) with explicit, seedable randomness.

Train: a random crop that fully contains the chosen box (each side extended at random up to the image
border), horizontal flip p=0.5 (boxes mirrored, texts left/right swapped), square bicubic resize to R (x and y
scaled independently), photometric-only RandAugment(2, 7), CLIP normalisation. A box survives when more than
50% of its area lies inside the crop; it is then clipped, shifted, mirrored and scaled. The chosen box always
survives.
Eval: no crop / flip / augmentation, just the resize (boxes clipped to the image and scaled).
Boxes are [x, y, w, h] in pixels throughout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from torchvision import ops, tv_tensors
from torchvision.transforms.v2 import functional as F

from xvlm_lit.data.transforms_common import (
    PHOTOMETRIC_OPS,
    AugOp,
    FlipMode,
    RngLike,
    SeededRandAugment,
    SwapFn,
    decide_flip,
    default_swap,
    rand_int,
    require_rng,
    resize_square,
    swap_texts,
    to_rgb,
    to_tensor_normalized,
)

BoxXYWH = tuple[float, float, float, float]


@dataclass(frozen=True)
class RegionAnnotation:
    """One region: ``bbox`` [x, y, w, h] in pixels, ``texts``, ``index`` (position in the input list)."""

    bbox: BoxXYWH
    texts: list[str] = field(default_factory=list)
    index: int = -1


def as_annotation(ann: RegionAnnotation | Mapping[str, Any], index: int) -> RegionAnnotation:
    """Accept a :class:`RegionAnnotation` or a mapping with "bbox" and "texts"; set ``index``."""
    if isinstance(ann, RegionAnnotation):
        return RegionAnnotation(tuple(map(float, ann.bbox)), list(ann.texts), index)
    return RegionAnnotation(tuple(map(float, ann["bbox"])), list(ann.get("texts", [])), index)


@dataclass(frozen=True)
class RegionParams:
    """All random choices of one :class:`RegionTransform` call; the crop is (top, left, height, width)."""

    top: int
    left: int
    height: int
    width: int
    flip: bool = False
    ops: tuple[AugOp, ...] = ()


def box_xywh_to_cxcywh_norm(box: Sequence[float] | torch.Tensor, image_size: int) -> torch.Tensor:
    """[x, y, w, h] pixels of the R x R image -> FloatTensor [..., 4] (cx, cy, w, h) / R clamped to [0, 1]."""
    b = torch.as_tensor(box, dtype=torch.float32)
    return (ops.box_convert(b, "xywh", "cxcywh") / image_size).clamp(0.0, 1.0)


def sample_crop_containing(rng: RngLike, box: Sequence[float], height: int, width: int) -> tuple[int, ...]:
    """Integer crop (top, left, height, width) fully containing ``box`` (x, y, w, h; clipped to the image)."""

    def side(lo: float, hi: float, size: int) -> tuple[int, int]:
        lo_i = min(max(math.floor(lo), 0), size - 1)
        hi_i = min(max(math.ceil(hi), lo_i + 1), size)
        start = rand_int(rng, 0, lo_i)
        stop = rand_int(rng, max(hi_i, start + 1), size)
        return start, stop

    x, y, w, h = box
    left, right = side(x, x + w, width)
    top, bottom = side(y, y + h, height)
    return top, left, bottom - top, right - left


def select_boxes(
    boxes_xywh: torch.Tensor, top: int, left: int, height: int, width: int, canvas: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop boxes FloatTensor [N,4] (xywh, image ``canvas`` = (H, W)).

    Returns (keep BoolTensor [N]: more than 50% of the box area inside the crop, boxes [N,4] as XYXY in crop
    coordinates, clipped to the crop). Zero-area boxes are never kept by this rule.
    """
    xyxy = ops.box_convert(boxes_xywh, "xywh", "xyxy")
    bb = tv_tensors.BoundingBoxes(xyxy, format="XYXY", canvas_size=canvas)
    cropped = F.crop(bb, top, left, height, width).as_subclass(torch.Tensor)
    cropped = ops.clip_boxes_to_image(cropped, (height, width))
    keep = ops.box_area(cropped) > 0.5 * ops.box_area(xyxy)
    return keep, cropped


class RegionTransform:
    """(PIL image, annotations, chosen index, rng) -> (FloatTensor [3,R,R], kept annotations, flipped).

    Kept annotations keep their input order, carry boxes [x, y, w, h] in pixels of the R x R output and
    ``index`` = their position in the input list (the chosen one has ``index == chosen``).

    Args:
        image_size: output side ``R``.
        train: crop / flip / photometric RandAugment when True; plain resize when False.
        flip: allow the horizontal flip (p=0.5); on a flip every kept text goes through ``swap_fn``.
        randaugment: photometric-only RandAugment(num_ops, magnitude) over ``ops``.
        min_inside: a box survives when strictly more than this fraction of its area lies inside the crop.
        flip_mode: "swap" or "avoid" (skip the flip when a text mentions left/right).
        swap_fn: left/right swapper; defaults to ``xvlm_lit.data.text.swap_left_right`` (imported lazily).
    """

    def __init__(
        self,
        image_size: int,
        train: bool = True,
        flip: bool = True,
        randaugment: bool = True,
        *,
        flip_mode: FlipMode = "swap",
        num_ops: int = 2,
        magnitude: int = 7,
        ops: Sequence[str] = PHOTOMETRIC_OPS,
        swap_fn: SwapFn = default_swap,
    ) -> None:
        self.image_size, self.train, self.flip = image_size, train, flip
        self.flip_mode, self.swap_fn = flip_mode, swap_fn
        self.augment = SeededRandAugment(num_ops, magnitude, ops) if randaugment else None

    def sample(
        self, img_size: tuple[int, int], anns: Sequence[RegionAnnotation], chosen: int, rng: RngLike
    ) -> RegionParams:
        """Draw crop / flip / ops for a source image of ``img_size = (width, height)``."""
        width, height = img_size
        top, left, h, w = sample_crop_containing(rng, anns[chosen].bbox, height, width)
        texts = [t for a in anns for t in a.texts]
        flip = self.flip and decide_flip(rng, texts, 0.5, self.flip_mode, self.swap_fn)
        r = self.image_size
        aug = tuple(self.augment.sample(rng, r, r)) if self.augment is not None else ()
        return RegionParams(top, left, h, w, flip, aug)

    def apply(
        self,
        img: Image.Image,
        anns: Sequence[RegionAnnotation | Mapping[str, Any]],
        chosen: int,
        params: RegionParams,
    ) -> tuple[torch.Tensor, list[RegionAnnotation], bool]:
        """Deterministically apply ``params`` (see the class docstring for the outputs)."""
        img, r, p = to_rgb(img), self.image_size, params
        items = [as_annotation(a, i) for i, a in enumerate(anns)]
        canvas = (img.height, img.width)
        boxes = torch.tensor([a.bbox for a in items], dtype=torch.float32).reshape(-1, 4)
        keep, xyxy = select_boxes(boxes, p.top, p.left, p.height, p.width, canvas)
        keep[chosen] = True
        img = F.crop(img, p.top, p.left, p.height, p.width)
        bb = tv_tensors.BoundingBoxes(xyxy[keep], format="XYXY", canvas_size=(p.height, p.width))
        if p.flip:
            img, bb = F.horizontal_flip(img), F.horizontal_flip(bb)
        img, bb = resize_square(img, r), F.resize(bb, [r, r])
        if p.ops and self.augment is not None:
            img = self.augment.apply(img, p.ops)
        out_boxes = ops.box_convert(bb.as_subclass(torch.Tensor), "xyxy", "xywh").tolist()
        kept = [a for a, k in zip(items, keep.tolist(), strict=True) if k]
        out = [self._rebuild(a, b, p.flip) for a, b in zip(kept, out_boxes, strict=True)]
        return to_tensor_normalized(img), out, p.flip

    def _rebuild(self, ann: RegionAnnotation, box: list[float], flipped: bool) -> RegionAnnotation:
        """A kept annotation with its new box and (on a flip) swapped texts."""
        texts = swap_texts(ann.texts, self.swap_fn) if flipped else list(ann.texts)
        return RegionAnnotation(tuple(box), texts, ann.index)

    def __call__(
        self,
        img: Image.Image,
        anns: Sequence[RegionAnnotation | Mapping[str, Any]],
        chosen: int,
        rng: RngLike | None = None,
    ) -> tuple[torch.Tensor, list[RegionAnnotation], bool]:
        """Train: random augmentation drawn from ``rng`` (required). Eval: resize only (``rng`` unused)."""
        if not 0 <= chosen < len(anns):
            raise IndexError(f"chosen={chosen} out of range for {len(anns)} annotations")
        if not self.train:
            return self.apply(img, anns, chosen, RegionParams(0, 0, img.height, img.width))
        items = [as_annotation(a, i) for i, a in enumerate(anns)]
        return self.apply(img, items, chosen, self.sample(img.size, items, chosen, require_rng(rng)))
