"""What the inference methods return (plain dataclasses with ``to_dict`` for JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass
class Scores:
    """Image-text scores. Pairwise: ``[Ni, Nt]`` (row = image, column = text); paired: ``[N]``.

    Attributes:
        itc: cosine similarity of the projected [CLS] features (what the evaluation ranks by before re-ranking).
        itm: ITM match probability (softmax of the matching head, index 1).
        itm_logit: the ITM match logit (what the evaluation's re-ranking sorts by).
    """

    itc: torch.Tensor
    itm: torch.Tensor
    itm_logit: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        return {k: v.tolist() for k, v in asdict(self).items()}


@dataclass
class Match:
    """One retrieved gallery entry: its ``rank`` (0 = best), ``index`` in the gallery, the gallery ``item`` (a
    path or text; ``None`` for an in-memory image), its ITC similarity, and, when it was re-ranked, its ITM logit
    and probability."""

    rank: int
    index: int
    item: str | None
    itc: float
    itm_logit: float | None = None
    itm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Box:
    """A predicted box in pixels of the ORIGINAL image (``image_size = (width, height)``).

    ``xyxy``: (x1, y1, x2, y2), the corners, as the grounding evaluation compares them; ``xywh``: (x, y, width,
    height) of the top-left corner, as the annotation files store boxes; ``cxcywh_norm``: the box head's raw
    output, (cx, cy, w, h) as fractions of the image (the square-resized image scales each axis independently, so
    the fractions hold for the original image too).
    """

    xyxy: tuple[float, float, float, float]
    cxcywh_norm: tuple[float, float, float, float]
    image_size: tuple[int, int]
    text: str

    @property
    def xywh(self) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = self.xyxy
        return (x1, y1, x2 - x1, y2 - y1)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "xyxy": list(self.xyxy), "xywh": list(self.xywh),
                "cxcywh_norm": list(self.cxcywh_norm), "image_size": list(self.image_size)}
