"""Shared pieces of the image transforms: CLIP normalisation, explicit-RNG helpers, seeded RandAugment, flips.

Every random draw goes through an explicit ``rng`` (``numpy.random.Generator`` or ``random.Random``) so that
data workers can seed deterministically; nothing here touches torch's global RNG.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

RngLike = np.random.Generator | random.Random
SwapFn = Callable[[str], str]
FlipMode = Literal["swap", "avoid"]

#: The full torchvision RandAugment op set (geometric and photometric).
ALL_OPS: tuple[str, ...] = tuple(v2.RandAugment._AUGMENTATION_SPACE)
#: The reference's image-text RandAugment ops (ALBEF/X-VLM): no op that changes hue (Color, Solarize, Posterize),
#: since captions name colours.
REFERENCE_ITC_OPS: tuple[str, ...] = ("Identity", "AutoContrast", "Equalize", "Brightness", "Sharpness",
                                      "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
#: The reference's region RandAugment ops: photometric only (boxes stay valid), hue kept.
PHOTOMETRIC_OPS: tuple[str, ...] = ("Identity", "AutoContrast", "Equalize", "Brightness", "Sharpness")
#: The reference's magnitude M is on a 0..10 scale: 11 bins make ``magnitude=7`` mean 70% of each op's range.
REFERENCE_MAGNITUDE_BINS = 11

# ----------------------------------------------------------------------------------------------- rng helpers


def rand_float(rng: RngLike) -> float:
    """A float uniform in [0, 1)."""
    return float(rng.random())


def rand_uniform(rng: RngLike, low: float, high: float) -> float:
    """A float uniform in [low, high)."""
    return low + (high - low) * rand_float(rng)


def rand_int(rng: RngLike, low: int, high: int) -> int:
    """An integer uniform in [low, high] (both inclusive)."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(low, high + 1))
    return rng.randint(low, high)


def require_rng(rng: RngLike | None) -> RngLike:
    """Return ``rng`` or raise: training-mode transforms refuse to fall back to a hidden global RNG."""
    if rng is None:
        raise ValueError("a training-mode transform needs an explicit rng (numpy Generator or random.Random)")
    return rng


# ----------------------------------------------------------------------------------------------- tensors


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (L, P, RGBA, CMYK, ...) to RGB."""
    return img if img.mode == "RGB" else img.convert("RGB")


def to_tensor_normalized(img: Image.Image | torch.Tensor) -> torch.Tensor:
    """PIL image (or uint8 tensor [3,H,W]) -> CLIP-normalised FloatTensor [3,H,W] (plain ``torch.Tensor``)."""
    if isinstance(img, Image.Image):
        img = to_rgb(img)
    x = F.to_dtype(F.to_image(img), torch.float32, scale=True)
    return F.normalize(x, mean=list(CLIP_MEAN), std=list(CLIP_STD)).as_subclass(torch.Tensor)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of the CLIP normalisation: FloatTensor [..., 3, H, W] -> values in about [0, 1]."""
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return x * std + mean


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Bicubic (antialiased) resize to ``size x size``; the aspect ratio is not kept."""
    return F.resize(img, [size, size], interpolation=v2.InterpolationMode.BICUBIC, antialias=True)


# ----------------------------------------------------------------------------------------------- RandAugment

AugOp = tuple[str, float]


class SeededRandAugment(v2.RandAugment):
    """torchvision ``RandAugment`` whose op / magnitude / sign draws come from an explicit ``rng``.

    The op set can be restricted (e.g. to :data:`PHOTOMETRIC_OPS`); the magnitude table and the op
    implementations are torchvision's own. ``sample`` draws ``num_ops`` (name, signed magnitude) pairs;
    ``apply`` runs them; ``forward(img, rng)`` does both.
    """

    def __init__(
        self, num_ops: int = 2, magnitude: int = 7, ops: Sequence[str] = REFERENCE_ITC_OPS,
        num_magnitude_bins: int = REFERENCE_MAGNITUDE_BINS
    ) -> None:
        super().__init__(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=num_magnitude_bins)
        unknown = set(ops) - set(ALL_OPS)
        if unknown or not ops:
            raise ValueError(f"unknown or empty RandAugment ops: {sorted(unknown)}")
        self.ops = tuple(ops)

    def sample(self, rng: RngLike, height: int, width: int) -> list[AugOp]:
        """Draw ``num_ops`` ops for an image of ``height x width``: [(name, signed magnitude)]."""
        out: list[AugOp] = []
        for _ in range(self.num_ops):
            name = self.ops[rand_int(rng, 0, len(self.ops) - 1)]
            magnitudes_fn, signed = self._AUGMENTATION_SPACE[name]
            magnitudes = magnitudes_fn(self.num_magnitude_bins, height, width)
            value = 0.0 if magnitudes is None else float(magnitudes[self.magnitude])
            if signed and rand_float(rng) <= 0.5:
                value = -value
            out.append((name, value))
        return out

    def apply(self, img: Image.Image, ops: Sequence[AugOp]) -> Image.Image:
        """Apply already-drawn ops in order (deterministic)."""
        for name, value in ops:
            img = self._apply_image_or_video_transform(
                img, name, value, interpolation=self.interpolation, fill=self._fill
            )
        return img

    def forward(self, img: Image.Image, rng: RngLike) -> Image.Image:  # type: ignore[override]
        """Draw ops from ``rng`` and apply them to a PIL image."""
        width, height = img.size
        return self.apply(img, self.sample(rng, height, width))


# ----------------------------------------------------------------------------------------------- flips


def default_swap(text: str) -> str:
    """Lazy proxy to :func:`xvlm_lit.data.text.swap_left_right`."""
    from xvlm_lit.data.text import swap_left_right

    return swap_left_right(text)


def decide_flip(rng: RngLike, texts: Sequence[str], p: float, mode: FlipMode, swap_fn: SwapFn) -> bool:
    """Draw the horizontal-flip decision (one draw from ``rng`` in every case).

    ``mode="swap"``: flip with probability ``p`` (the caller swaps left/right in the texts).
    ``mode="avoid"``: as "swap", but never flip when some text mentions left/right (``swap_fn`` changes it).
    """
    flip = rand_float(rng) < p
    if flip and mode == "avoid":
        flip = all(swap_fn(t) == t for t in texts)
    return flip


def swap_texts(texts: Sequence[str], swap_fn: SwapFn) -> list[str]:
    """Left/right-swap every text."""
    return [swap_fn(t) for t in texts]


def log_uniform(rng: RngLike, low: float, high: float) -> float:
    """exp(uniform(log low, log high))."""
    return math.exp(rand_uniform(rng, math.log(low), math.log(high)))
