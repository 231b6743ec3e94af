"""Candidate boxes for weakly supervised grounding: a ``dets.json`` file (image id -> detector boxes).

The format is the X-VLM release's (``data/finetune/refcoco+/dets.json``): one JSON object mapping an image id (a
string, the COCO image id for RefCOCO+) to a list of boxes ``[x, y, w, h, ...]`` in pixels of the original image
(extra trailing numbers such as a detector score are ignored: the reference reads ``det[:4]``).
``python -m data_prep.shapes_tasks`` writes one for the shapes world, keyed by the records' ``image_id``.

A box that is not four finite numbers or has no area, and an entry that is not a list of boxes, are skipped and
counted (``skipped`` by reason), never a crash; a missing or unreadable file is an error naming it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("xvlm_lit.data")


class DetectionsError(ValueError):
    """A detections file that cannot be used (the message names the file and says what to do)."""


@dataclass
class Detections:
    """Candidate boxes per image.

    Attributes:
        boxes: image id -> list of ``[x, y, w, h]`` (floats, original pixels); an image may have none left.
        skipped: counts of what was left out, by reason (``bad_entry``, ``bbox_malformed``, ``bbox_empty``).
        path: the file read.
    """

    boxes: dict[str, list[list[float]]]
    skipped: dict[str, int] = field(default_factory=dict)
    path: Path | None = None

    def candidates(self, image_id: Any) -> list[list[float]]:
        """The boxes of ``image_id``; a prefixed id (``coco/391895``) also matches its last part (``391895``,
        how the reference keys COCO images). Empty when the file has no entry for the image."""
        key = str(image_id)
        if key in self.boxes:
            return self.boxes[key]
        return self.boxes.get(key.rsplit("/", 1)[-1], [])

    def __len__(self) -> int:
        return len(self.boxes)


def parse_box(value: Any) -> tuple[list[float] | None, str | None]:
    """``([x, y, w, h], None)`` for a usable box, else ``(None, reason)``."""
    if not isinstance(value, list | tuple) or len(value) < 4:
        return None, "bbox_malformed"
    head = value[:4]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in head):
        return None, "bbox_malformed"
    x, y, w, h = (float(v) for v in head)
    if w <= 0 or h <= 0:
        return None, "bbox_empty"
    return [x, y, w, h], None


def parse_detections(data: Any, where: str = "dets.json") -> Detections:
    """Validate a decoded ``dets.json`` object (see the module docstring); counts and logs what it skips."""
    if not isinstance(data, dict):
        raise DetectionsError(f"{where}: expected a JSON object image id -> list of [x, y, w, h] boxes, "
                              f"got {type(data).__name__}")
    skipped: Counter[str] = Counter()
    boxes: dict[str, list[list[float]]] = {}
    for image_id, entry in data.items():
        if not isinstance(entry, list):
            skipped["bad_entry"] += 1
            continue
        kept = []
        for value in entry:
            box, reason = parse_box(value)
            if reason:
                skipped[reason] += 1
            else:
                kept.append(box)
        boxes[str(image_id)] = kept
    if skipped:
        log.warning("%s: skipped %s", where, dict(skipped))
    return Detections(boxes, dict(skipped))


def read_detections(path: str | os.PathLike) -> Detections:
    """Read and validate the detections file at ``path``."""
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise DetectionsError(f"{path} not found: weak grounding ranks the candidate boxes of this file (X-VLM's "
                              "data/finetune/refcoco+/dets.json for RefCOCO+; python -m data_prep.shapes_tasks "
                              "writes one for the shapes world); set task.dets_file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DetectionsError(f"{path}: not valid JSON ({err})") from err
    dets = parse_detections(data, str(path))
    dets.path = path
    return dets
