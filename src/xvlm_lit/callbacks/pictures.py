"""Pictures of evaluation examples, for people who would rather look than read: grounding (image, expression,
true box in green, predicted box in red), retrieval top-5 rows (query text, five thumbnails, the true image framed
green), Grad-CAM overlays for weak grounding, and a loss curve. Written as PNG files under ``<run>/pictures/`` and,
when a :class:`~lightning.pytorch.loggers.WandbLogger` is active, logged as ``wandb.Image`` s.

Plain PIL (matplotlib is not a dependency). Boxes are ``(x0, y0, x1, y1)`` in pixels of the picture's image.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from xvlm_lit.data.transforms_common import denormalize

log = logging.getLogger("xvlm_lit.pictures")

TRUE = (0, 200, 0)     # green: the annotated box / the correct image
PRED = (230, 0, 0)     # red: the model's box
TEXT_BG = (255, 255, 255)
TEXT_FG = (0, 0, 0)
FONT_SIZE = 13


def _font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def to_pil(image: torch.Tensor, normalized: bool = True) -> Image.Image:
    """``[3, H, W]`` float (CLIP-normalised unless ``normalized=False``: values in [0, 1]) -> RGB PIL image."""
    x = denormalize(image.detach().float().cpu()) if normalized else image.detach().float().cpu()
    return Image.fromarray((x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy(), "RGB")


def _wrap(text: str, width_px: int, font: ImageFont.ImageFont, max_lines: int = 3) -> list[str]:
    """Greedy word wrap of ``text`` to ``width_px``; at most ``max_lines`` lines (the last one ellipsised)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width_px:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = [*lines[:max_lines - 1], lines[max_lines - 1] + " ..."]
    return lines or [""]


def _with_caption(picture: Image.Image, text: str, above: bool = False) -> Image.Image:
    """``picture`` with ``text`` wrapped in a white band below (or above) it."""
    font = _font()
    lines = _wrap(text, picture.width - 8, font)
    band = 6 + (FONT_SIZE + 3) * len(lines)
    out = Image.new("RGB", (picture.width, picture.height + band), TEXT_BG)
    out.paste(picture, (0, band if above else 0))
    draw = ImageDraw.Draw(out)
    y0 = 3 if above else picture.height + 3
    for i, line in enumerate(lines):
        draw.text((4, y0 + i * (FONT_SIZE + 3)), line, fill=TEXT_FG, font=font)
    return out


def draw_grounding(image: Image.Image, text: str, true_xyxy: Sequence[float] | None,
                   pred_xyxy: Sequence[float] | None, scale: float = 2.0) -> Image.Image:
    """The image enlarged ``scale`` times with the true box (green) and the predicted box (red, drawn last so it
    shows where they overlap), and the expression below."""
    size = (round(image.width * scale), round(image.height * scale))
    picture = image.convert("RGB").resize(size, Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    width = max(2, round(scale))
    for box, colour in ((true_xyxy, TRUE), (pred_xyxy, PRED)):
        if box is not None:
            x0, y0, x1, y1 = (float(v) * scale for v in box)
            draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=colour, width=width)
    return _with_caption(picture, f"{text}  [green: true, red: predicted]")


def draw_retrieval(query: str, thumbs: Sequence[Image.Image], correct: Sequence[bool], thumb: int = 96,
                   labels: Sequence[str] | None = None) -> Image.Image:
    """The query text above a row of ranked thumbnails (rank 1 first); correct ones framed green, others grey.
    ``labels``: the text under each thumbnail (default ``#rank``, plus ``true`` on correct ones)."""
    pad = 6
    row = Image.new("RGB", (pad + len(thumbs) * (thumb + pad), thumb + 2 * pad + FONT_SIZE + 4), TEXT_BG)
    draw = ImageDraw.Draw(row)
    for r, (im, ok) in enumerate(zip(thumbs, correct, strict=True)):
        x = pad + r * (thumb + pad)
        row.paste(im.convert("RGB").resize((thumb, thumb), Image.BICUBIC), (x, pad))
        draw.rectangle([x - 3, pad - 3, x + thumb + 2, pad + thumb + 2], outline=TRUE if ok else (170, 170, 170),
                       width=3 if ok else 1)
        label = labels[r] if labels is not None else f"#{r + 1}" + (" true" if ok else "")
        draw.text((x, pad + thumb + 3), label, fill=TEXT_FG, font=_font())
    return _with_caption(row, f"query: {query}", above=True)


def draw_heatmap(image: Image.Image, heat: torch.Tensor, text: str, true_xyxy: Sequence[float] | None = None,
                 pred_xyxy: Sequence[float] | None = None, scale: float = 2.0, opacity: float = 0.5) -> Image.Image:
    """Grad-CAM ``heat [n, n]`` (any scale) blended in red over the image, boxes and expression as
    :func:`draw_grounding`."""
    h = heat.detach().float().cpu()
    h = (h - h.min()) / (h.max() - h.min()) if float(h.max() - h.min()) > 0 else torch.zeros_like(h)
    grid = Image.fromarray((h * 255).round().byte().numpy(), "L").resize(image.size, Image.BICUBIC)
    red = Image.new("RGB", image.size, (255, 0, 0))
    mask = grid.point(lambda v: round(v * opacity))
    blended = Image.composite(red, image.convert("RGB"), mask)
    return draw_grounding(blended, text, true_xyxy, pred_xyxy, scale)


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe short form of ``text``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:limit] or "x"


def write_pictures(pictures: Sequence[tuple[str, Image.Image]], out_dir: str | Path, key: str,
                   loggers: Iterable = (), step: int | None = None) -> list[Path]:
    """Save ``(name, picture)`` pairs as ``out_dir/pictures/<key>/<NN>_<name>.png`` and log them under ``key`` to
    every WandbLogger of ``loggers`` (with the names as captions); returns the paths written."""
    if not pictures:
        return []
    folder = Path(out_dir) / "pictures" / key
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, picture) in enumerate(pictures):
        path = folder / f"{i:02d}_{slug(name)}.png"
        picture.save(path)
        paths.append(path)
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":  # no wandb import unless it is in use
            logger.log_image(key=f"pictures/{key}", images=[p for _, p in pictures],
                             caption=[n for n, _ in pictures], step=step)
    log.info("%d pictures in %s", len(paths), folder)
    return paths


def read_curves(metrics_csv: str | Path, pattern: str = r"^train/(.*/)?loss$|^train/.*_loss$"
                ) -> dict[str, list[tuple[int, float]]]:
    """``{column: [(step, value), ...]}`` of the CSV logger's ``metrics.csv`` columns matching ``pattern``."""
    curves: dict[str, list[tuple[int, float]]] = {}
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            step = row.get("step")
            for key, value in row.items():
                if key and value not in (None, "") and step not in (None, "") and re.search(pattern, key):
                    v = float(value)
                    if math.isfinite(v):
                        curves.setdefault(key, []).append((int(float(step)), v))
    return curves


PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127)]


def draw_curves(curves: dict[str, list[tuple[int, float]]], title: str = "training losses",
                size: tuple[int, int] = (720, 420)) -> Image.Image:
    """Line plot of ``curves`` on common axes (step, value) with a legend; PIL only."""
    width, height = size
    left, right, top, bottom = 60, 170, 30, 40
    out = Image.new("RGB", size, (255, 255, 255))
    draw, font = ImageDraw.Draw(out), _font(12)
    points = [p for c in curves.values() for p in c]
    if not points:
        draw.text((left, height // 2), "no loss values logged", fill=TEXT_FG, font=font)
        return out
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(0.0, min(ys)), max(ys) * 1.05 if max(ys) > 0 else 1.0
    pw, ph = width - left - right, height - top - bottom

    def at(step: float, value: float) -> tuple[float, float]:
        return left + (step - x0) / (x1 - x0) * pw, top + (1 - (value - y0) / (y1 - y0)) * ph

    draw.rectangle([left, top, left + pw, top + ph], outline=(0, 0, 0))
    for i in range(5):
        v = y0 + (y1 - y0) * i / 4
        _, y = at(x0, v)
        draw.line([left - 4, y, left, y], fill=(0, 0, 0))
        draw.text((4, y - 7), f"{v:.3g}", fill=TEXT_FG, font=font)
        s = x0 + (x1 - x0) * i / 4
        x, _ = at(s, y0)
        draw.line([x, top + ph, x, top + ph + 4], fill=(0, 0, 0))
        draw.text((x - 10, top + ph + 8), f"{round(s)}", fill=TEXT_FG, font=font)
    draw.text((left, 8), title, fill=TEXT_FG, font=_font(14))
    draw.text((left + pw // 2 - 15, height - 18), "step", fill=TEXT_FG, font=font)
    for i, (name, curve) in enumerate(sorted(curves.items())):
        colour = PALETTE[i % len(PALETTE)]
        pts = [at(s, v) for s, v in sorted(curve)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        else:
            draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=colour)
        ly = top + 4 + i * 18
        draw.line([left + pw + 10, ly + 7, left + pw + 30, ly + 7], fill=colour, width=3)
        draw.text((left + pw + 34, ly), name.removeprefix("train/"), fill=TEXT_FG, font=font)
    return out


def loss_curve_png(metrics_csv: str | Path, out: str | Path) -> Path | None:
    """Draw the training losses of a CSV logger's ``metrics.csv`` into ``out`` (PNG); None when there are none."""
    curves = read_curves(metrics_csv)
    if not curves:
        return None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_curves(curves).save(out)
    return out


def grounding_examples(images: torch.Tensor, image_index: torch.Tensor, texts: Sequence[str],
                       true_xyxy: torch.Tensor, pred_xyxy: torch.Tensor, n: int) -> list[tuple[str, Image.Image]]:
    """The first ``n`` (text, picture) grounding examples. ``images [N, 3, R, R]`` normalised, ``image_index [T]``,
    boxes ``[T, 4]`` in pixels of the ``R x R`` image."""
    return [(texts[t], draw_grounding(to_pil(images[int(image_index[t])]), texts[t], true_xyxy[t].tolist(),
                                      pred_xyxy[t].tolist()))
            for t in range(min(n, len(texts)))]


def retrieval_examples(images: torch.Tensor | Mapping[int, torch.Tensor], texts: Sequence[str],
                       text_to_image: torch.Tensor, top_index: torch.Tensor, n: int, k: int = 5
                       ) -> list[tuple[str, Image.Image]]:
    """Text -> image retrieval rows of the first ``n`` text queries: ``top_index [Nt, >=k]`` ranked image indices
    into ``images [Ni, 3, R, R]`` (normalised; or a mapping index -> ``[3, R, R]`` holding at least the images
    shown), ``text_to_image [Nt]`` the true image of each text. When the true
    image is not in the top ``k`` it is shown after them, framed green and labelled ``true (rank > k)``."""
    rows = []
    for t in range(min(n, len(texts))):
        ranked, true = [int(i) for i in top_index[t, :k]], int(text_to_image[t])
        labels = [f"#{r + 1}" + (" true" if i == true else "") for r, i in enumerate(ranked)]
        shown = ranked if true in ranked else [*ranked, true]
        if true not in ranked:
            labels.append(f"true (rank > {k})")
        rows.append((texts[t], draw_retrieval(texts[t], [to_pil(images[i]) for i in shown],
                                              [i == true for i in shown], labels=labels)))
    return rows


class EvalPictures:
    """Up to ``n`` pictures per evaluation loader, kept on the process that makes them (a task module adds them
    from its evaluation steps on rank 0) and written when the loader's evaluation ends. ``n=0``: none are made."""

    def __init__(self, n: int = 8) -> None:
        if n < 0:
            raise ValueError(f"task.pictures={n}: must be >= 0 (0 = no pictures)")
        self.n = int(n)
        self._kept: dict[int, list[tuple[str, Image.Image]]] = {}

    def wanted(self, loader: int) -> int:
        """How many more pictures ``loader`` takes."""
        return max(self.n - len(self._kept.get(loader, [])), 0)

    def add(self, loader: int, name: str, picture: Image.Image) -> None:
        if self.wanted(loader):
            self._kept.setdefault(loader, []).append((name, picture))

    def flush(self, loader: int, out_dir: str | Path | None, key: str, loggers: Iterable = (),
              step: int | None = None) -> list[Path]:
        """Write (when ``out_dir`` is set) and forget the pictures of ``loader``."""
        kept = self._kept.pop(loader, [])
        return write_pictures(kept, out_dir, key, loggers, step) if out_dir else []
