"""Opening one image safely: every failure becomes a :class:`BadImage` carrying its skip reason.

Reasons (see :mod:`xvlm_lit.data.skips`): ``missing_image`` (no such file), ``image_too_large`` (the header declares
more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels: a decompression bomb, refused before any pixel is decoded),
``corrupt_image`` (anything PIL cannot decode: zero bytes, truncated or garbage data).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps


class BadImage(OSError):
    """An image that cannot be used; ``reason`` is its skip reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def image_skip_reason(err: BaseException) -> str:
    """The skip reason of an exception raised while opening an image (``corrupt_image`` unless it says)."""
    return getattr(err, "reason", "corrupt_image")


def _check_pixels(img: Image.Image, where: str) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and img.width * img.height > limit:
        raise BadImage("image_too_large", f"{where}: {img.width}x{img.height} = {img.width * img.height} pixels, "
                                          f"more than PIL.Image.MAX_IMAGE_PIXELS = {limit}")


def load_rgb(source: bytes | str | os.PathLike, where: str = "", exif: bool = False) -> Image.Image:
    """Decode ``source`` (encoded bytes or a file path) into an RGB image; ``exif`` applies the EXIF orientation.

    Raises:
        BadImage: with ``reason`` ``missing_image``, ``image_too_large`` or ``corrupt_image``.
    """
    where = where or (str(source) if not isinstance(source, bytes) else "image bytes")
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise BadImage("missing_image", f"{where}: no such file")
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():  # a size between 1x and 2x the limit warns; it is refused below anyway
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img_cm = Image.open(fp)
        with img_cm as img:
            _check_pixels(img, where)
            img.load()
            out = (ImageOps.exif_transpose(img) if exif else img).convert("RGB")
    except BadImage:
        raise
    except Image.DecompressionBombError as exn:
        raise BadImage("image_too_large", f"{where}: {exn} (PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS})") \
            from exn
    except Exception as exn:  # PIL raises many types (OSError, SyntaxError, ValueError, struct.error, ...)
        raise BadImage("corrupt_image", f"{where}: {type(exn).__name__}: {exn}") from exn
    if min(out.size) < 1:
        raise BadImage("corrupt_image", f"{where}: empty image {out.size}")
    return out
