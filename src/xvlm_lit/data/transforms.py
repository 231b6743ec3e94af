"""Image(-text) transforms of X-VLM (SPEC sections 5 and 7) with explicit, seedable randomness.

Train: RandomResizedCrop(R, scale, bicubic) -> horizontal flip (texts left/right swapped) -> RandAugment(2, 7)
-> CLIP normalisation. Eval: bicubic resize to R x R -> CLIP normalisation. Region (box-aware) transforms live
in :mod:`xvlm_lit.data.transforms_region` and are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from xvlm_lit.data.transforms_common import (
    ALL_OPS,
    CLIP_MEAN,
    CLIP_STD,
    PHOTOMETRIC_OPS,
    REFERENCE_ITC_OPS,
    AugOp,
    FlipMode,
    RngLike,
    SeededRandAugment,
    SwapFn,
    decide_flip,
    default_swap,
    denormalize,
    log_uniform,
    rand_int,
    rand_uniform,
    require_rng,
    resize_square,
    swap_texts,
    to_rgb,
    to_tensor_normalized,
)
from xvlm_lit.data.transforms_region import (
    RegionAnnotation,
    RegionParams,
    RegionTransform,
    box_xywh_to_cxcywh_norm,
)

__all__ = [
    "ALL_OPS",
    "CLIP_MEAN",
    "CLIP_STD",
    "PHOTOMETRIC_OPS",
    "REFERENCE_ITC_OPS",
    "CropParams",
    "ImageTextParams",
    "ImageTextTransform",
    "RegionAnnotation",
    "RegionParams",
    "RegionTransform",
    "RngLike",
    "SeededRandAugment",
    "box_xywh_to_cxcywh_norm",
    "denormalize",
    "sample_resized_crop",
    "to_tensor_normalized",
]


@dataclass(frozen=True)
class CropParams:
    """A crop window in pixels of the source image."""

    top: int
    left: int
    height: int
    width: int


def sample_resized_crop(
    rng: RngLike, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> CropParams:
    """torchvision's RandomResizedCrop parameter draw (10 tries, then a centre crop), from an explicit rng."""
    area = height * width
    for _ in range(10):
        target = area * rand_uniform(rng, *scale)
        aspect = log_uniform(rng, *ratio)
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return CropParams(rand_int(rng, 0, height - h), rand_int(rng, 0, width - w), h, w)
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return CropParams((height - h) // 2, (width - w) // 2, h, w)


@dataclass(frozen=True)
class ImageTextParams:
    """All random choices of one :class:`ImageTextTransform` call (``crop=None``: plain resize)."""

    crop: CropParams | None
    flip: bool
    ops: tuple[AugOp, ...]


class ImageTextTransform:
    """Image(s) + texts -> (FloatTensor [3,R,R] CLIP-normalised, texts, flipped).

    Args:
        image_size: output side ``R``.
        train: random crop / flip / RandAugment when True; plain bicubic resize when False.
        scale, ratio: RandomResizedCrop area fraction and aspect-ratio ranges.
        flip: allow the horizontal flip (p=0.5). On a flip every text is passed through ``swap_fn``.
        randaugment: apply RandAugment(num_ops, magnitude) over ``ops`` (default: torchvision's full set).
        crop: False gives the "plain resize + flip + RandAugment" variant (weak grounding).
        flip_mode: "swap" (swap left/right in the texts) or "avoid" (skip the flip if a text mentions them).
        swap_fn: left/right swapper; defaults to ``xvlm_lit.data.text.swap_left_right`` (imported lazily).
    """

    def __init__(
        self,
        image_size: int,
        train: bool = True,
        scale: tuple[float, float] = (0.2, 1.0),
        flip: bool = True,
        randaugment: bool = True,
        *,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        crop: bool = True,
        flip_mode: FlipMode = "swap",
        num_ops: int = 2,
        magnitude: int = 7,
        ops: Sequence[str] = REFERENCE_ITC_OPS,
        swap_fn: SwapFn = default_swap,
    ) -> None:
        self.image_size, self.train, self.scale, self.ratio = image_size, train, scale, ratio
        self.flip, self.crop, self.flip_mode, self.swap_fn = flip, crop, flip_mode, swap_fn
        self.augment = SeededRandAugment(num_ops, magnitude, ops) if randaugment else None

    def sample(self, img_size: tuple[int, int], texts: Sequence[str], rng: RngLike) -> ImageTextParams:
        """Draw crop / flip / ops for a source image of ``img_size = (width, height)``."""
        width, height = img_size
        crop = sample_resized_crop(rng, height, width, self.scale, self.ratio) if self.crop else None
        flip = self.flip and decide_flip(rng, texts, 0.5, self.flip_mode, self.swap_fn)
        r = self.image_size
        ops = tuple(self.augment.sample(rng, r, r)) if self.augment is not None else ()
        return ImageTextParams(crop, flip, ops)

    def apply(
        self, img: Image.Image, texts: Sequence[str], params: ImageTextParams
    ) -> tuple[torch.Tensor, list[str], bool]:
        """Deterministically apply ``params``; returns (FloatTensor [3,R,R], texts, flipped)."""
        img, r = to_rgb(img), self.image_size
        if params.crop is None:
            img = resize_square(img, r)
        else:
            c = params.crop
            img = F.resized_crop(
                img,
                c.top,
                c.left,
                c.height,
                c.width,
                [r, r],
                interpolation=v2.InterpolationMode.BICUBIC,
                antialias=True,
            )
        out_texts = list(texts)
        if params.flip:
            img = F.horizontal_flip(img)
            out_texts = swap_texts(out_texts, self.swap_fn)
        if params.ops and self.augment is not None:
            img = self.augment.apply(img, params.ops)
        return to_tensor_normalized(img), out_texts, params.flip

    def __call__(
        self, img: Image.Image, texts: Sequence[str], rng: RngLike | None = None
    ) -> tuple[torch.Tensor, list[str], bool]:
        """Train: random augmentation drawn from ``rng`` (required). Eval: bicubic resize (``rng`` unused)."""
        if not self.train:
            return to_tensor_normalized(resize_square(to_rgb(img), self.image_size)), list(texts), False
        return self.apply(img, texts, self.sample(img.size, texts, require_rng(rng)))
