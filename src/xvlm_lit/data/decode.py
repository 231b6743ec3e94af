"""Raw sample -> checked record, image and texts; every problem is counted (see :mod:`xvlm_lit.data.skips`).

Shard schema (``kind: shards``): ``jpg`` + ``json`` with ``image_id, source, width, height, captions, regions,
objects`` (DESIGN.md). img2dataset (``kind: img2dataset``): ``jpg`` + ``txt`` (the caption; ``json["caption"]`` as
fallback), caption-only. Region texts: a region is ``"<one attribute> <one caption>"`` (the reference's format), an
object is ``"<attr1> <attr2> ... <label>"``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from xvlm_lit.data.images import BadImage, load_rgb
from xvlm_lit.data.skips import SkipCounter
from xvlm_lit.data.sources import IMAGE_EXTS, SourceSpec
from xvlm_lit.data.text import clean_caption

BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image before it counts as outside (it is then clipped)
ID_MASK = (1 << 63) - 1


def stable_id(text: str) -> int:
    """A 63-bit id of a string, identical in every process, rank and run (blake2b)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") & ID_MASK


@dataclass
class Record:
    """One sample's annotations (shard schema; img2dataset samples have only captions)."""

    image_id: str
    captions: list[Any]
    regions: list[Any] = field(default_factory=list)
    objects: list[Any] = field(default_factory=list)
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class RegionElement:
    """A region/object text with its box ``(x, y, w, h)`` in pixels of the stored image and its concept id."""

    text: str
    box: tuple[float, float, float, float]
    concept: int


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else [value]


def _parse_json(data: bytes | None) -> Any:
    if data is None:
        return None
    return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)


def parse_record(raw: dict[str, Any], spec: SourceSpec, counter: SkipCounter) -> Record | None:
    """The annotations of a raw sample, or None (counted as ``bad_json``) when they cannot be read."""
    key = str(raw.get("__key__", "?"))
    if spec.kind == "img2dataset":
        return _parse_img2dataset(raw, spec, key, counter)
    try:
        meta = _parse_json(raw.get("json"))
    except (ValueError, UnicodeDecodeError) as exn:
        counter.skip("bad_json", f"{spec.name}/{key}: {exn}")
        return None
    if not isinstance(meta, dict):
        counter.skip("bad_json", f"{spec.name}/{key}: json member missing or not an object")
        return None
    size = [meta.get("width"), meta.get("height")]
    ok_size = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    return Record(str(meta.get("image_id") or f"{spec.name}/{key}"), _as_list(meta.get("captions")),
                  _as_list(meta.get("regions")), _as_list(meta.get("objects")),
                  size[0] if ok_size else None, size[1] if ok_size else None)


def _parse_img2dataset(raw: dict[str, Any], spec: SourceSpec, key: str, counter: SkipCounter) -> Record | None:
    text = raw.get("txt")
    if text is None:
        try:
            meta = _parse_json(raw.get("json"))
        except (ValueError, UnicodeDecodeError) as exn:
            counter.skip("bad_json", f"{spec.name}/{key}: no txt and a broken json ({exn})")
            return None
        text = meta.get("caption") if isinstance(meta, dict) else None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return Record(f"{spec.name}/{key}", [] if text is None else [text])


def decode_image(raw: dict[str, Any], where: str, counter: SkipCounter) -> Image.Image | None:
    """The decoded RGB image of a raw sample, or None (``missing_image`` / ``corrupt_image`` / ``image_too_large``)."""
    data = next((raw[e] for e in IMAGE_EXTS if raw.get(e) is not None), None)
    if data is None:
        counter.skip("missing_image", f"{where}: members {sorted(k for k in raw if not k.startswith('__'))}")
        return None
    try:
        return load_rgb(bytes(data), where)
    except BadImage as exn:
        counter.skip(exn.reason, exn.detail)
        return None


def check_size(record: Record, img: Image.Image, where: str, counter: SkipCounter) -> bool:
    """False (``size_mismatch``) when the json's width/height disagree with the decoded image."""
    if record.width is None or (record.width, record.height) == img.size:
        return True
    counter.skip("size_mismatch", f"{where}: json {record.width}x{record.height}, image {img.width}x{img.height}")
    return False


def clean_texts(texts: Sequence[Any], max_words: int, where: str, counter: SkipCounter) -> list[str]:
    """Cleaned non-empty captions (each non-string one counted as ``wrong_type``, each empty one as
    ``empty_caption``)."""
    out = []
    for text in texts:
        if not isinstance(text, str):
            counter.skip("wrong_type", f"{where}: caption {str(text)[:80]!r} is a {type(text).__name__}, not a string")
            continue
        cleaned = clean_caption(text, max_words)
        if cleaned:
            out.append(cleaned)
        else:
            counter.skip("empty_caption", f"{where}: {text[:80]!r}")
    return out


def check_box(box: Any, width: int, height: int) -> tuple[str | None, tuple[float, float, float, float]]:
    """(problem code or None, the box clipped to the image) for an ``[x, y, w, h]`` pixel box."""
    if not isinstance(box, list | tuple) or len(box) != 4:
        return "bbox_malformed", (0.0, 0.0, 0.0, 0.0)
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        return "bbox_malformed", (0.0, 0.0, 0.0, 0.0)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return "bbox_malformed", (0.0, 0.0, 0.0, 0.0)
    if w <= 0 or h <= 0:
        return "bbox_empty", (x, y, w, h)
    t = BOX_TOLERANCE
    if x < -t or y < -t or x + w > width + t or y + h > height + t:
        return "bbox_outside_image", (x, y, w, h)
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return "bbox_empty", (x, y, w, h)
    return None, (x0, y0, x1 - x0, y1 - y0)


def _pick(items: list[Any], rng: np.random.Generator | None) -> Any:
    """A uniformly drawn element (the first one when ``rng`` is None)."""
    return items[0] if rng is None or len(items) == 1 else items[int(rng.integers(len(items)))]


def _region_texts(region: Any, rng: np.random.Generator | None, all_captions: bool) -> list[Any]:
    captions = _as_list(region.get("captions", region.get("caption")))
    attrs = [a for a in _as_list(region.get("attributes")) if isinstance(a, str) and a.strip()]
    if not captions:
        return [""]
    chosen = captions if all_captions else [_pick(captions, rng)]
    if not attrs:
        return chosen
    prefix = _pick(attrs, rng)
    return [f"{prefix} {c}" if isinstance(c, str) else c for c in chosen]


def _object_texts(obj: Any) -> list[Any]:
    attrs = [a for a in _as_list(obj.get("attributes")) if isinstance(a, str)]
    label = obj.get("label")
    return [" ".join([*attrs, label]) if isinstance(label, str) else label]


def region_elements(record: Record, size: tuple[int, int], max_words: int, where: str, counter: SkipCounter,
                    rng: np.random.Generator | None = None, all_captions: bool = False,
                    objects: bool = True) -> list[RegionElement]:
    """Usable region and object texts of a record, in record order (regions first).

    Args:
        size: ``(width, height)`` of the decoded image (boxes are checked against it).
        rng: draws one caption / attribute per region; None takes the first (deterministic evaluation).
        all_captions: one element per caption of each region instead of one drawn caption.
        objects: include ``objects`` entries.
    """
    entries = [("regions", r) for r in record.regions] + ([("objects", o) for o in record.objects] if objects else [])
    out: list[RegionElement] = []
    for kind, entry in entries:
        if not isinstance(entry, dict):
            counter.skip("bbox_malformed", f"{where}: {kind} entry {entry!r}")
            continue
        problem, box = check_box(entry.get("bbox"), *size)
        if problem:
            counter.skip(problem, f"{where}: {kind} bbox {entry.get('bbox')!r} in {size[0]}x{size[1]}")
            continue
        texts = _region_texts(entry, rng, all_captions) if kind == "regions" else _object_texts(entry)
        concept = stable_id(f"{record.image_id}|box|{','.join(str(round(v)) for v in box)}")
        out.extend(RegionElement(t, box, concept) for t in clean_texts(texts, max_words, where, counter))
    return out
