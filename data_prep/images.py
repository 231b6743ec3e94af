"""Image loading for the converters: decode, EXIF-rotate, RGB, pre-resize, and box scaling to the stored pixels.

:func:`load_image` turns a path (or candidate paths, or raw bytes) into an upright RGB image whose longer side is at
most ``max_side``; problems raise :class:`ImageSkip` with a stable reason (``missing_image``, ``unreadable_image``,
``image_too_large``: more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``, refused before decoding).
:func:`fit_box` maps an ``[x, y, w, h]`` box from the frame the annotation was made in to the stored image.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageOps

from data_prep.shards import MAX_SIDE, resize_max_side

ImageSource = str | os.PathLike | bytes | Sequence[str | os.PathLike]
_SWAPPED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 degrees
MIN_INSIDE = 0.5  # a box keeps its place only when more than half of it lies inside the image (then it is clipped)
BOX_DECIMALS = 2


class ImageSkip(Exception):
    """An image that cannot be used; ``reason`` is the manifest skip code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass
class Loaded:
    """An image ready to store: ``image`` is upright RGB, at most ``max_side``; ``full`` is its upright size before
    the resize; ``orientation`` the EXIF orientation that was applied (1: none)."""

    image: Image.Image
    full: tuple[int, int]
    orientation: int = 1

    @property
    def swapped(self) -> bool:
        """True when the EXIF rotation turned the image by 90 degrees (stored width is the upright height)."""
        return self.orientation in _SWAPPED_ORIENTATIONS

    def stored_frame(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(full size, resized size) in the orientation of the file's pixels as stored, before EXIF rotation."""
        (fw, fh), (w, h) = self.full, self.image.size
        return ((fh, fw), (h, w)) if self.swapped else ((fw, fh), (w, h))


def target_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """The stored size of a ``width`` x ``height`` image (same rounding as :func:`data_prep.shards.resize_max_side`)."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, bytes | bytearray | memoryview):
        return Image.open(io.BytesIO(bytes(source)))
    candidates = [source] if isinstance(source, str | os.PathLike) else list(source)
    for path in candidates:
        if os.path.isfile(path):
            return Image.open(path)
    raise ImageSkip("missing_image", "tried " + (", ".join(str(p) for p in candidates) or "no path"))


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the image; it is then not rotated
        return 1


def _refuse_bomb(image: Image.Image) -> None:
    """Raise ``image_too_large`` for more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (before decoding any)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise ImageSkip("image_too_large", f"{image.width}x{image.height} pixels, more than "
                                           f"PIL.Image.MAX_IMAGE_PIXELS = {limit} (a decompression bomb?)")


def load_image(source: ImageSource, max_side: int = MAX_SIDE) -> Loaded:
    """Decode ``source`` (a path, candidate paths tried in order, or encoded bytes) into a stored-size RGB image.

    Large JPEGs are decoded at a reduced DCT scale (PIL ``draft``) no smaller than the target, then resized with
    bicubic filtering, so the result depends only on the file and ``max_side``.

    Raises:
        ImageSkip: ``missing_image`` when no candidate file exists, ``unreadable_image`` when decoding fails,
            ``image_too_large`` for a decompression bomb.
    """
    try:
        with warnings.catch_warnings():  # 1x-2x the limit only warns: refused below like a larger one
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = _open(source)
        with opened as image:
            _refuse_bomb(image)
            orientation = _orientation(image)
            swapped = orientation in _SWAPPED_ORIENTATIONS
            full = (image.height, image.width) if swapped else (image.width, image.height)
            target = target_size(*full, max_side)
            if image.format == "JPEG" and target != full:
                image.draft("RGB", (target[1], target[0]) if swapped else target)
            image.load()
            upright = ImageOps.exif_transpose(image) if orientation in range(2, 9) else image
            rgb = upright.convert("RGB")
    except ImageSkip:
        raise
    except Image.DecompressionBombError as err:
        raise ImageSkip("image_too_large", str(err)) from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageSkip("unreadable_image", str(err)) from err
    if rgb.size == full:
        rgb, _ = resize_max_side(rgb, max_side)
    elif rgb.size != target:
        rgb = rgb.resize(target, Image.BICUBIC)
    return Loaded(rgb, full, orientation if 1 <= orientation <= 8 else 1)


def fit_box(bbox: Sequence[float], frame: tuple[float, float], size: tuple[int, int]) -> tuple[list[float] | None, str]:
    """Map ``bbox`` ([x, y, w, h] in a ``frame`` of width x height, e.g. pixels of the original image or (1, 1) for
    normalised boxes) onto an image of ``size`` pixels.

    Returns ``(box, note)``: ``box`` is the clipped, scaled box rounded to 0.01 px, or None when the box is dropped;
    ``note`` is "" (kept as is), ``"bbox_clipped"`` (kept, clipped to the image), or the drop reason:
    ``bbox_malformed`` (not four finite numbers), ``bbox_empty`` (zero or negative width/height, before or after
    scaling), ``bbox_outside_image`` (half or more of its area lies outside the frame).
    """
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None, "bbox_malformed"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return None, "bbox_malformed"
    if w <= 0 or h <= 0:
        return None, "bbox_empty"
    fw, fh = frame
    x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, fw), min(y + h, fh)
    if x2 <= x1 or y2 <= y1 or (x2 - x1) * (y2 - y1) <= MIN_INSIDE * w * h:
        return None, "bbox_outside_image"
    clipped = (x1, y1, x2, y2) != (x, y, x + w, y + h)
    sx, sy = size[0] / fw, size[1] / fh
    x1, x2 = round(x1 * sx, BOX_DECIMALS), round(min(x2 * sx, size[0]), BOX_DECIMALS)
    y1, y2 = round(y1 * sy, BOX_DECIMALS), round(min(y2 * sy, size[1]), BOX_DECIMALS)
    bw, bh = round(x2 - x1, BOX_DECIMALS), round(y2 - y1, BOX_DECIMALS)
    if bw <= 0 or bh <= 0:
        return None, "bbox_empty"
    return [x1, y1, bw, bh], ("bbox_clipped" if clipped else "")


def orient_box(box: Sequence[float], orientation: int, size: tuple[int, int]) -> list[float]:
    """Carry an [x, y, w, h] box on an image of ``size`` (as stored) through the EXIF ``orientation``'s transpose
    (what :func:`PIL.ImageOps.exif_transpose` does to the pixels)."""
    x1, y1, w, h = box
    x2, y2, (W, H) = x1 + w, y1 + h, size  # noqa: N806
    corners = {
        1: (x1, y1, x2, y2), 2: (W - x2, y1, W - x1, y2), 3: (W - x2, H - y2, W - x1, H - y1),
        4: (x1, H - y2, x2, H - y1), 5: (y1, x1, y2, x2), 6: (H - y2, x1, H - y1, x2),
        7: (H - y2, W - x2, H - y1, W - x1), 8: (y1, W - x2, y2, W - x1),
    }[orientation]
    a, b, c, d = (round(v, BOX_DECIMALS) for v in corners)
    return [a, b, round(c - a, BOX_DECIMALS), round(d - b, BOX_DECIMALS)]
