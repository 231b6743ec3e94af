"""The shapes world's geometry: palette, shape layout sampling and rendering with tight pixel boxes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "orange": (250, 135, 10),
    "yellow": (235, 205, 25),
    "green": (40, 160, 60),
    "blue": (35, 85, 220),
    "purple": (135, 55, 175),
    "black": (35, 35, 35),
}
KINDS = ("circle", "square", "triangle", "star", "diamond")
# Side of a shape's bounding square as a fraction of the image side; the two ranges are far apart on purpose.
SIZES: dict[str, tuple[float, float]] = {"small": (0.13, 0.17), "large": (0.28, 0.36)}
COUNT_PROBS = (0.15, 0.35, 0.30, 0.20)  # P(1 shape), ..., P(4 shapes)
OVERLAP_PROB = 0.25  # share of images whose shapes may partly overlap
MAX_OVERLAP = 0.15  # largest box intersection allowed, as a share of the smaller box
TEXTURES = ("plain", "plain", "noise", "stripes", "grid", "gradient")


@dataclass(frozen=True)
class Shape:
    """One drawn shape; ``bbox`` is the tight ``[x, y, w, h]`` pixel box of its drawn pixels."""

    kind: str
    colour: str
    size: str
    bbox: tuple[int, int, int, int]

    @property
    def centre(self) -> tuple[float, float]:
        """Centre of the tight box."""
        x, y, w, h = self.bbox
        return x + w / 2, y + h / 2


@dataclass(frozen=True)
class Placement:
    """A sampled shape before drawing: attributes plus the centre and side of its bounding square."""

    kind: str
    colour: str
    size: str
    cx: float
    cy: float
    side: float

    def square(self) -> tuple[float, float, float, float]:
        """The bounding square as (x0, y0, x1, y1)."""
        r = self.side / 2
        return self.cx - r, self.cy - r, self.cx + r, self.cy + r


def _intersection(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def _fits(box: tuple[float, ...], placed: list[Placement], allow_overlap: bool) -> bool:
    for other in placed:
        o = other.square()
        if not allow_overlap:
            grown = (o[0] - 2, o[1] - 2, o[2] + 2, o[3] + 2)
            if _intersection(box, grown) > 0:
                return False
        else:
            smaller = min(box[2] - box[0], o[2] - o[0]) ** 2
            if _intersection(box, o) > MAX_OVERLAP * smaller:
                return False
    return True


def _sample_one(rng: np.random.Generator, size_px: int, used: set[tuple[str, str]]) -> tuple[str, str, str, float]:
    while True:
        colour = str(rng.choice(list(COLOURS)))
        kind = str(rng.choice(KINDS))
        if (colour, kind) not in used:
            break
    size = "small" if rng.random() < 0.5 else "large"
    lo, hi = SIZES[size]
    return colour, kind, size, float(rng.uniform(lo, hi) * size_px)


def sample_layout(rng: np.random.Generator, size_px: int) -> list[Placement]:
    """Sample 1-4 shapes with distinct (colour, kind), placed without or with limited partial overlap."""
    n = int(rng.choice(len(COUNT_PROBS), p=COUNT_PROBS)) + 1
    allow_overlap = bool(rng.random() < OVERLAP_PROB)
    placed: list[Placement] = []
    used: set[tuple[str, str]] = set()
    for _ in range(n):
        colour, kind, size, side = _sample_one(rng, size_px, used)
        margin = side / 2 + 2
        for _attempt in range(60):
            cx, cy = rng.uniform(margin, size_px - margin, size=2)
            cand = Placement(kind, colour, size, float(cx), float(cy), side)
            if _fits(cand.square(), placed, allow_overlap):
                placed.append(cand)
                used.add((colour, kind))
                break
    return placed


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        rad = r if i % 2 == 0 else 0.45 * r
        ang = -math.pi / 2 + i * math.pi / 5
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    return pts


def draw_mask(p: Placement, size_px: int) -> Image.Image:
    """An ``L`` mask (255 inside) of one shape."""
    mask = Image.new("L", (size_px, size_px), 0)
    draw = ImageDraw.Draw(mask)
    x0, y0, x1, y1 = p.square()
    r, cx, cy = p.side / 2, p.cx, p.cy
    if p.kind == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=255)
    elif p.kind == "square":
        draw.rectangle((x0, y0, x1, y1), fill=255)
    elif p.kind == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=255)
    elif p.kind == "diamond":
        draw.polygon([(cx, y0), (cx + 0.75 * r, cy), (cx, y1), (cx - 0.75 * r, cy)], fill=255)
    elif p.kind == "star":
        draw.polygon(_star(cx, cy, r), fill=255)
    else:
        raise ValueError(f"unknown shape kind {p.kind!r}")
    return mask


def background(rng: np.random.Generator, size_px: int) -> tuple[np.ndarray, str]:
    """A light plain or lightly textured background (float32 HxWx3) and the texture's name."""
    base = rng.uniform(222, 250, size=3).astype(np.float32)
    img = np.broadcast_to(base, (size_px, size_px, 3)).copy()
    texture = str(rng.choice(TEXTURES))
    yy, xx = np.mgrid[0:size_px, 0:size_px].astype(np.float32)
    if texture == "noise":
        img += rng.normal(0, 4, size=(size_px, size_px, 1)).astype(np.float32)
    elif texture == "stripes":
        period = rng.integers(6, 14)
        img -= 8 * (((xx + yy) // period) % 2 == 0)[..., None]
    elif texture == "grid":
        period = rng.integers(10, 20)
        img -= 10 * ((xx % period == 0) | (yy % period == 0))[..., None]
    elif texture == "gradient":
        img -= (12 * yy / size_px)[..., None]
    return img, texture


def render(rng: np.random.Generator, size_px: int) -> tuple[Image.Image, list[Shape], str]:
    """Draw one image; returns it, its shapes in drawing order (with tight boxes) and the background texture."""
    canvas, texture = background(rng, size_px)
    shapes = []
    for p in sample_layout(rng, size_px):
        mask = draw_mask(p, size_px)
        left, top, right, bottom = mask.getbbox()
        jitter = rng.integers(-10, 11, size=3)
        colour = np.clip(np.array(COLOURS[p.colour]) + jitter, 0, 255).astype(np.float32)
        inside = np.asarray(mask) > 0
        canvas[inside] = colour
        shapes.append(Shape(p.kind, p.colour, p.size, (left, top, right - left, bottom - top)))
    image = Image.fromarray(np.clip(canvas, 0, 255).round().astype(np.uint8), "RGB")
    return image, shapes, texture
