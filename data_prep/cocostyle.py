"""Streaming reader of COCO-style annotation files (COCO captions/instances, Objects365), grouped by image.

A COCO-style file is one object ``{"images": [...], "annotations": [...], "categories": [...], ...}``. The
``images`` and ``annotations`` arrays are streamed (see :mod:`data_prep.jsonstream`) and only what the shards need
is kept: per image its declared size and file names, its captions, and its boxes packed in a float array
(``x, y, w, h, category_id`` per box), so a multi-gigabyte file never sits in memory as Python objects.
"""

from __future__ import annotations

import os
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.jsonstream import iter_object

BOX_FIELDS = 5  # x, y, w, h, category id
_RELEASE_PREFIX = re.compile(r"^images/v\d+/(.+)$")


@dataclass
class ImageInfo:
    width: int
    height: int
    file_names: list[str] = field(default_factory=list)


@dataclass
class CocoStyle:
    """What the converters need from one or more COCO-style files, keyed by image id."""

    images: dict[int, ImageInfo] = field(default_factory=dict)
    categories: dict[int, str] = field(default_factory=dict)
    captions: dict[int, list[str]] = field(default_factory=dict)
    boxes: dict[int, array] = field(default_factory=dict)
    bad_annotations: int = 0

    def objects(self, image_id: int) -> list[dict]:
        """The image's boxes as ``{"bbox", "label"}`` (label from the categories; unknown ids give "")."""
        flat = self.boxes.get(image_id, ())
        return [{"bbox": list(flat[i:i + 4]), "label": self.categories.get(int(flat[i + 4]), "")}
                for i in range(0, len(flat), BOX_FIELDS)]


def _size(value: Any) -> int | None:
    """A declared width/height: a non-negative int (or integral float), 0 when absent, None when malformed."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != int(value):
        return None
    return int(value)


def _is_id(value: Any) -> bool:
    """COCO-style ids are integers (a string or a float id is malformed: ids are sorted and compared)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _add_image(data: CocoStyle, entry: Any) -> None:
    """Add an ``images`` entry; one that is not an object, has no usable id, or declares a size that is not a
    number is counted in ``bad_annotations`` and left out (its annotations then find no image)."""
    if not isinstance(entry, dict) or not _is_id(entry.get("id")):
        data.bad_annotations += 1
        return
    width, height = _size(entry.get("width")), _size(entry.get("height"))
    if width is None or height is None:
        data.bad_annotations += 1
        return
    info = data.images.get(entry["id"])
    if info is None:
        info = data.images[entry["id"]] = ImageInfo(width, height)
    name = entry.get("file_name")
    if isinstance(name, str) and name and name not in info.file_names:
        info.file_names.append(name)


def _add_annotation(data: CocoStyle, ann: Any) -> None:
    image_id = ann.get("image_id") if isinstance(ann, dict) else None
    if not _is_id(image_id):
        data.bad_annotations += 1
        return
    if "caption" in ann:
        data.captions.setdefault(image_id, []).append(ann["caption"])
        return
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or "category_id" not in ann:
        data.bad_annotations += 1
        return
    try:
        data.boxes.setdefault(image_id, array("d")).extend([*map(float, bbox), float(ann["category_id"])])
    except (TypeError, ValueError):
        data.bad_annotations += 1


def read_coco_style(paths: list[str | os.PathLike], data: CocoStyle | None = None) -> CocoStyle:
    """Read (and merge) COCO-style files: images, categories, captions and boxes."""
    data = data or CocoStyle()
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"annotation file not found: {path}")
        for key, value in iter_object(path, stream={"images", "annotations"}):
            if key == "images":
                for entry in value:
                    _add_image(data, entry)
            elif key == "annotations":
                for ann in value:
                    _add_annotation(data, ann)
            elif key == "categories":
                data.categories.update({c["id"]: c["name"] for c in value if isinstance(c, dict)
                                        and _is_id(c.get("id")) and isinstance(c.get("name"), str)})
    return data


def release_relative(name: str) -> str | None:
    """``name`` without a leading ``images/vN/`` (Objects365 annotations say ``images/v1/patch0/x.jpg`` while the
    released archives unpack to ``train/patch0/x.jpg``), or None when it has no such prefix."""
    match = _RELEASE_PREFIX.match(name.replace("\\", "/"))
    return match.group(1) if match else None


def image_candidates(root: Path, names: list[str], subdirs: tuple[str, ...]) -> Iterator[str]:
    """Paths where an image may lie, in this order: ``root/name`` and ``root/<subdir>/name``; the same with a
    leading ``images/vN/`` stripped from ``name`` (:func:`release_relative`); then ``root/<basename>`` and
    ``root/<subdir>/<basename>``."""
    seen = set()
    for name in names:
        variants = [name, *filter(None, [release_relative(name)]), Path(name).name]
        for variant in variants:
            for path in (root / variant, *(root / d / variant for d in subdirs)):
                if str(path) not in seen:
                    seen.add(str(path))
                    yield str(path)
