"""Inputs -> PIL images: paths (read as the task datasets read them), PIL images, or pixel tensors."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from xvlm_lit.data.tasks.annotations import open_image
from xvlm_lit.inference.errors import ImageReadError

ImageLike = str | os.PathLike | Image.Image | torch.Tensor


def read_image(path: str | os.PathLike) -> Image.Image:
    """The upright RGB image at ``path``, exactly as the task datasets open it (EXIF orientation applied)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ImageReadError(f"no such image file: {path}")
    try:
        return open_image(path)
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(f"cannot read image {path}: {type(err).__name__}: {err}") from None


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """A pixel tensor ``[3, H, W]`` (or ``[1, H, W]``, ``[H, W]``): uint8 0-255, or float in [0, 1] (rounded to
    8 bits, since the evaluation transform resizes 8-bit PIL images) -> an RGB PIL image."""
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ImageReadError(f"an image tensor must be [3, H, W] or [H, W] pixels, got shape {tuple(x.shape)}")
    x = x.detach().cpu()
    if x.is_floating_point():
        if x.min() < 0 or x.max() > 1:
            raise ImageReadError("a float image tensor must hold pixels in [0, 1] (pass the raw image, not a "
                                 "normalised one: the checkpoint's evaluation transform is applied here)")
        x = (x * 255).round().to(torch.uint8)
    elif x.dtype != torch.uint8:
        raise ImageReadError(f"an integer image tensor must be uint8, got {x.dtype}")
    return F.to_pil_image(x).convert("RGB")


def to_pil(item: ImageLike) -> Image.Image:
    """One image input as an RGB PIL image."""
    if isinstance(item, Image.Image):
        return item if item.mode == "RGB" else item.convert("RGB")
    if isinstance(item, torch.Tensor):
        return tensor_to_pil(item)
    if isinstance(item, str | os.PathLike):
        return read_image(item)
    raise ImageReadError(f"not an image: {type(item).__name__} (give a path, a PIL image or a [3, H, W] tensor)")


def as_image_list(images: ImageLike | Sequence[ImageLike]) -> tuple[list[ImageLike], bool]:
    """(list of single images, True when ``images`` was one image). A ``[B, 3, H, W]`` tensor is ``B`` images."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return list(images), False
    if isinstance(images, str | os.PathLike | Image.Image | torch.Tensor):
        return [images], True
    return list(images), False
