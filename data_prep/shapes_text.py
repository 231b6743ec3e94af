"""The shapes world's language: spatial relations, whole-image captions, region texts and objects."""

from __future__ import annotations

import numpy as np

from data_prep.shapes_draw import Shape

COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
RELATIONS = ("left of", "right of", "above", "below")


def relation(a: Shape, b: Shape) -> str:
    """Where ``a`` lies relative to ``b``, along the axis on which their centres differ most (image y points down)."""
    (ax, ay), (bx, by) = a.centre, b.centre
    dx, dy = ax - bx, ay - by
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def position(shape: Shape, size_px: int) -> str:
    """An absolute position phrase from the box centre's third of the image, e.g. ``"at the top left"``."""
    cx, cy = shape.centre
    col = "left" if cx < size_px / 3 else "right" if cx > 2 * size_px / 3 else ""
    row = "top" if cy < size_px / 3 else "bottom" if cy > 2 * size_px / 3 else ""
    if row and col:
        return f"at the {row} {col}"
    if row:
        return f"at the {row}"
    if col:
        return f"on the {col}"
    return "in the center"


def describe(shape: Shape, with_size: bool = True) -> str:
    """``"small red circle"`` (or ``"red circle"``)."""
    return f"{shape.size} {shape.colour} {shape.kind}" if with_size else f"{shape.colour} {shape.kind}"


def with_article(shape: Shape, with_size: bool = True) -> str:
    """The description with its indefinite article: ``"a small red circle"``, ``"an orange star"``."""
    text = describe(shape, with_size)
    return ("an " if text[0] in "aeiou" else "a ") + text


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def relation_caption(shapes: list[Shape], order: list[int], size_px: int) -> str:
    """``"a small red circle left of a large blue square and a green star at the top"``: pairs in ``order``."""
    if len(shapes) == 1:
        return f"{with_article(shapes[0])} {position(shapes[0], size_px)}"
    clauses = []
    for i in range(0, len(order), 2):
        first = shapes[order[i]]
        if i + 1 < len(order):
            second = shapes[order[i + 1]]
            clauses.append(f"{with_article(first)} {relation(first, second)} {with_article(second)}")
        else:  # an odd shape out gets its absolute position, so "and" cannot read as part of a relation
            clauses.append(f"{with_article(first)} {position(first, size_px)}")
    return " and ".join(clauses)


def listing_caption(shapes: list[Shape], order: list[int], texture: str) -> str:
    """``"three shapes: a large blue square, a small red circle and a green star"``."""
    if len(shapes) == 1:
        return f"a single {describe(shapes[0])} on a {texture} background"
    items = [with_article(shapes[i]) for i in order]
    return f"{COUNT_WORDS[len(shapes)]} shapes: {_join(items)}"


def left_to_right_caption(shapes: list[Shape]) -> str:
    """``"from left to right: a red circle, a blue square and a green star"`` (sorted by box centre x)."""
    ordered = sorted(shapes, key=lambda s: s.centre[0])
    if len(shapes) == 1:
        return f"one {describe(ordered[0], with_size=False)} that is {ordered[0].size}"
    return "from left to right: " + _join([with_article(s, with_size=False) for s in ordered])


def captions(rng: np.random.Generator, shapes: list[Shape], size_px: int, texture: str) -> list[str]:
    """Three whole-image captions; each names every shape's colour and kind."""
    order = [int(i) for i in rng.permutation(len(shapes))]
    listing_order = [int(i) for i in rng.permutation(len(shapes))]
    return [
        relation_caption(shapes, order, size_px),
        listing_caption(shapes, listing_order, texture),
        left_to_right_caption(shapes),
    ]


def _union(a: Shape, b: Shape) -> list[int]:
    ax, ay, aw, ah = a.bbox
    bx, by, bw, bh = b.bbox
    x0, y0 = min(ax, bx), min(ay, by)
    return [x0, y0, max(ax + aw, bx + bw) - x0, max(ay + ah, by + bh) - y0]


def regions(rng: np.random.Generator, shapes: list[Shape], size_px: int, max_pairs: int = 2) -> list[dict]:
    """One region per shape (two texts) plus up to ``max_pairs`` shape pairs with a relation and the union box."""
    out = [
        {"bbox": list(s.bbox), "captions": [describe(s), f"the {describe(s, False)} {position(s, size_px)}"],
         "attributes": []}
        for s in shapes
    ]
    pairs = [(i, j) for i in range(len(shapes)) for j in range(i + 1, len(shapes))]
    if pairs:
        picks = rng.choice(len(pairs), size=min(max_pairs, len(pairs)), replace=False)
        for k in sorted(int(p) for p in picks):
            i, j = pairs[k] if rng.random() < 0.5 else pairs[k][::-1]
            first, second = shapes[i], shapes[j]
            text = f"the {describe(first)} {relation(first, second)} the {describe(second)}"
            out.append({"bbox": _union(first, second), "captions": [text], "attributes": []})
    return out


def objects(shapes: list[Shape]) -> list[dict]:
    """Object entries: label = kind, attributes = [size, colour]."""
    return [{"bbox": list(s.bbox), "label": s.kind, "attributes": [s.size, s.colour]} for s in shapes]
