"""Pictures of predictions: a grounding box drawn on its image, and an HTML page of retrieval results."""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from xvlm_lit.inference.results import Box, Match

#: box colours, one per text in turn
PALETTE = ((230, 25, 75), (0, 130, 200), (60, 180, 75), (245, 130, 48), (145, 30, 180), (70, 240, 240))
THUMB = 160  # thumbnail side in the HTML page, pixels


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def enlarge(image: Image.Image, scale: float) -> Image.Image:
    """``image`` resized by ``scale`` (bicubic), e.g. to draw legible text on a small image."""
    if scale == 1:
        return image
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)


def draw_box(image: Image.Image, box: Box, label: str | None = None, colour: tuple[int, int, int] = PALETTE[0],
             scale: float = 1.0) -> Image.Image:
    """A copy of ``image`` with ``box`` outlined and ``label`` (default: the text) above it; ``image`` is the
    original enlarged by ``scale`` (see :func:`enlarge`), ``box`` in pixels of the original."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(min(out.size) / 150))
    xyxy = tuple(v * scale for v in box.xyxy)
    draw.rectangle(xyxy, outline=colour, width=width)
    text = box.text if label is None else label
    font = _font(max(12, round(min(out.size) / 28)))
    x1, y1 = xyxy[0], xyxy[1]
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 6, bottom - top + 6
    x = min(max(0.0, x1), max(0.0, out.width - w))
    y = y1 - h if y1 - h >= 0 else min(xyxy[3], out.height - h)
    draw.rectangle([x, y, x + w, y + h], fill=colour)
    draw.text((x + 3 - left, y + 3 - top), text, fill=(255, 255, 255), font=font)
    return out


def _thumbnail_uri(path: str) -> str:
    """A small JPEG of the image at ``path`` as a ``data:`` URI (the page works when moved)."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def retrieval_html(queries: Sequence[str], results: Sequence[Sequence[Match]], path: str | os.PathLike,
                   query_images: Sequence[str] | None = None) -> Path:
    """Write one section per query: text -> top-k image thumbnails, or image -> top-k texts, with scores."""
    parts = ["<!doctype html><meta charset='utf-8'><title>xvlm_lit retrieval</title>",
             "<style>body{font-family:sans-serif} figure{display:inline-block;margin:6px;text-align:center;"
             "vertical-align:top;width:170px} figcaption{font-size:12px}</style>"]
    for n, (query, matches) in enumerate(zip(queries, results, strict=True)):
        head = html.escape(query)
        if query_images:
            head = f"<img src='{_thumbnail_uri(query_images[n])}'> {head}"
        parts.append(f"<h2>{head}</h2><div>")
        for m in matches:
            scores = f"itc {m.itc:.3f}" + ("" if m.itm is None else f", itm {m.itm:.3f}")
            body = (f"<img src='{_thumbnail_uri(m.item)}'>" if not query_images and m.item else "")
            name = html.escape(os.path.basename(m.item) if not query_images and m.item else str(m.item))
            parts.append(f"<figure>{body}<figcaption>#{m.rank + 1} {name}<br>{scores}</figcaption></figure>")
        parts.append("</div>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return out
