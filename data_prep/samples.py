"""From a source's raw annotations to one shard sample: image loaded, texts checked, boxes fitted, drops counted.

A converter describes each image as a :class:`Raw` (annotations in the frame they were made in); :func:`build`
loads the image and returns a :class:`Built` sample or a :class:`Skipped` one. Every text or box that is removed
is counted in ``dropped`` by reason, so nothing disappears silently:

- ``empty_caption``: a caption (image or region) that is empty after the reference's caption cleaning;
- ``empty_label``: an object label that is empty after cleaning;
- ``empty_attribute``: an attribute that is empty after cleaning (the object or region is kept);
- ``wrong_type``: a caption, label or attribute that is not a string (a number, a list, an object, null);
- ``bbox_malformed`` / ``bbox_empty`` / ``bbox_outside_image``: see :func:`data_prep.images.fit_box`.

A sample left with no text at all is skipped (``Skipped``) under its most frequent drop reason, or ``no_text``.
A sample with boxes whose annotation file declares an image size with another aspect ratio than the file's (more
than 2% apart, after EXIF rotation) is skipped as ``size_mismatch``: its boxes cannot be placed (a file that is merely
resized, e.g. a downscaled copy of COCO, is fine: boxes are scaled from the declared size to the pixels).
``adjusted`` counts changes that keep the item: ``bbox_clipped``, ``exif_rotated`` (images), ``bbox_exif_rotated``.

Texts are stored as given (whitespace collapsed): the training pipeline cleans them with its own ``max_words``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from data_prep.images import ImageSkip, ImageSource, Loaded, fit_box, load_image, orient_box
from data_prep.shards import encode_jpeg
from xvlm_lit.data.text import clean_caption

NO_LIMIT = 1 << 30  # max_words for the emptiness check: keep every word
NORMALISED = (1.0, 1.0)  # the frame of boxes given as fractions of the image size
MAX_ASPECT_ERROR = 0.02  # a declared image size whose aspect ratio differs more from the file's is not this image


@dataclass
class Raw:
    """One image and its annotations as a source gives them.

    ``frame`` is the (width, height) the boxes refer to: the declared image size of the annotation file, (1, 1)
    for normalised boxes, or None for the image's own pixels. Regions are ``{"bbox", "captions", "attributes"?}``,
    objects ``{"bbox", "label", "attributes"?}``.

    ``boxes_on`` says which pixels the boxes were drawn on when the file carries an EXIF rotation: ``"stored"``
    (the file's pixels before rotation: COCO, Visual Genome, Objects365, Open Images and the X-VLM reference all
    decode without applying EXIF; the boxes are then rotated with the image) or ``"upright"``. A declared ``frame``
    equal to the upright size but not to the stored one (a 90-degree rotation) means ``"upright"`` whatever is set.
    """

    key: str
    image_id: str
    image: ImageSource
    captions: list[str] = field(default_factory=list)
    regions: list[dict[str, Any]] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    frame: tuple[float, float] | None = None
    boxes_on: str = "stored"


@dataclass
class Built:
    """A sample to write, with what was removed from it (``dropped``) and adjusted (``adjusted``)."""

    key: str
    jpg: bytes
    record: dict[str, Any]
    dropped: Counter = field(default_factory=Counter)
    adjusted: Counter = field(default_factory=Counter)


@dataclass
class Skipped:
    """A sample not written, under ``reason``; ``dropped`` holds the texts/boxes removed before it was given up;
    ``detail`` says more when there is more to say (for ``missing_image``: the paths tried)."""

    key: str
    reason: str
    dropped: Counter = field(default_factory=Counter)
    detail: str = ""


def normalise_text(text: Any) -> str:
    """A text with its whitespace collapsed, or "" when it is not a string or is empty after caption cleaning."""
    if not isinstance(text, str):
        return ""
    text = " ".join(text.split())
    return text if clean_caption(text, NO_LIMIT) else ""


def as_list(value: Any) -> list:
    """``value`` as a list: None -> [], a str -> [str], a list stays."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _texts(values: Any, dropped: Counter, reason: str) -> list[str]:
    out = []
    for value in as_list(values):
        text = normalise_text(value)
        if text:
            out.append(text)
        else:
            dropped[reason if isinstance(value, str) else "wrong_type"] += 1
    return out


@dataclass
class _Geometry:
    """How boxes go from the annotation ``frame`` to the stored image: scaled onto ``size`` (the resized image in
    the annotation's orientation), then turned by the EXIF ``orientation``."""

    frame: tuple[float, float]
    size: tuple[int, int]
    orientation: int = 1


def _geometry(raw: Raw, loaded: Loaded) -> _Geometry:
    if loaded.orientation == 1 or raw.boxes_on == "upright":
        return _Geometry(raw.frame or loaded.full, loaded.image.size)
    stored_full, stored_size = loaded.stored_frame()
    if raw.frame and tuple(raw.frame) == loaded.full != stored_full:
        return _Geometry(raw.frame, loaded.image.size)  # declared size is the upright one: boxes are upright
    return _Geometry(raw.frame or stored_full, stored_size, loaded.orientation)


def _aspect_differs(frame: tuple[float, float], size: tuple[int, int]) -> bool:
    declared, actual = frame[0] / frame[1], size[0] / size[1]
    return abs(declared - actual) > MAX_ASPECT_ERROR * actual


def _box(item: dict, geo: _Geometry, dropped: Counter, adjusted: Counter) -> list[float] | None:
    bbox = item.get("bbox")
    box, note = fit_box(bbox, geo.frame, geo.size) if bbox is not None else (None, "bbox_malformed")
    if box is None:
        dropped[note] += 1
        return None
    if note:
        adjusted[note] += 1
    if geo.orientation != 1:
        adjusted["bbox_exif_rotated"] += 1
        box = orient_box(box, geo.orientation, geo.size)
    return box


def _regions(raw: Raw, geo: _Geometry, dropped: Counter, adjusted: Counter) -> list[dict]:
    out = []
    for item in raw.regions:
        box = _box(item, geo, dropped, adjusted)
        if box is None:
            continue
        captions = _texts(item.get("captions"), dropped, "empty_caption")
        if not captions:
            continue
        attributes = _texts(item.get("attributes"), dropped, "empty_attribute")
        out.append({"bbox": box, "captions": captions, "attributes": attributes})
    return out


def _objects(raw: Raw, geo: _Geometry, dropped: Counter, adjusted: Counter) -> list[dict]:
    out = []
    for item in raw.objects:
        box = _box(item, geo, dropped, adjusted)
        if box is None:
            continue
        label = normalise_text(item.get("label"))
        if not label:
            dropped["empty_label" if isinstance(item.get("label"), str | None) else "wrong_type"] += 1
            continue
        attributes = _texts(item.get("attributes"), dropped, "empty_attribute")
        out.append({"bbox": box, "label": label, "attributes": attributes})
    return out


def skip_reason(dropped: Counter) -> str:
    """Why a sample left without any text is skipped: its most frequent drop reason, or ``no_text`` when it had
    no annotation at all (so a caption-only sample whose caption cleans to "" is skipped as ``empty_caption``)."""
    if not dropped:
        return "no_text"
    return min(dropped.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def build(raw: Raw, source: str, max_side: int, quality: int) -> Built | Skipped:
    """Load ``raw``'s image and make its shard sample (see the module docstring for what is dropped)."""
    try:
        loaded = load_image(raw.image, max_side)
    except ImageSkip as skip:
        return Skipped(raw.key, skip.reason, detail=skip.detail)
    dropped, adjusted = Counter(), Counter()
    if loaded.orientation != 1:
        adjusted["exif_rotated"] += 1
    geo = _geometry(raw, loaded)
    boxes = raw.regions or raw.objects
    if boxes and raw.frame and tuple(raw.frame) != NORMALISED and _aspect_differs(geo.frame, geo.size):
        return Skipped(raw.key, "size_mismatch")
    captions = _texts(raw.captions, dropped, "empty_caption")
    regions = _regions(raw, geo, dropped, adjusted)
    objects = _objects(raw, geo, dropped, adjusted)
    if not (captions or regions or objects):
        return Skipped(raw.key, skip_reason(dropped), dropped)
    size = loaded.image.size
    record = {"image_id": raw.image_id, "source": source, "width": size[0], "height": size[1],
              "captions": captions, "regions": regions, "objects": objects}
    return Built(raw.key, encode_jpeg(loaded.image, quality), record, dropped, adjusted)
