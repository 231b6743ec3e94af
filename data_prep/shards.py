"""Shard writing shared by every converter: schema checks, a manifest, and a deterministic webdataset sink.

Each sample is ``{"__key__": str, "jpg": bytes, "json": record}`` where ``record`` follows the shard schema of
DESIGN.md (``image_id``, ``source``, ``width``, ``height``, ``captions``, ``regions``, ``objects``; boxes are
``[x, y, w, h]`` in pixels of the stored image). Shards are byte-identical for identical inputs: every tar member
gets a fixed mtime, owner and mode, and the json is serialised with a fixed layout.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import webdataset as wds
from PIL import Image

MAX_SIDE = 512
REQUIRED = ("image_id", "source", "width", "height", "captions", "regions", "objects")
MAX_SKIP_EXAMPLES = 5
COUNT_FIELDS = ("images", "captions", "regions", "region_captions", "objects")


# ----------------------------------------------------------------------------------------------- schema checks
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_bbox(bbox: Any, width: int, height: int) -> str | None:
    """Return a problem (``"code: detail"``) for an ``[x, y, w, h]`` box, or None when it is valid."""
    if not isinstance(bbox, list | tuple) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return f"bbox_malformed: {bbox!r}"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return f"bbox_empty: {list(bbox)}"
    if x < 0 or y < 0 or x + w > width + 1e-6 or y + h > height + 1e-6:
        return f"bbox_outside_image: {list(bbox)} in {width}x{height}"
    return None


def _check_texts(texts: Any, where: str, allow_empty_list: bool) -> list[str]:
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return [f"bad_type: {where} must be a list of str"]
    if not texts and not allow_empty_list:
        return [f"empty_caption: {where} has no text"]
    return [f"empty_caption: {where}[{i}]" for i, t in enumerate(texts) if not t.strip()]


def _check_attributes(item: dict, where: str) -> list[str]:
    attrs = item.get("attributes", [])
    if not isinstance(attrs, list) or not all(isinstance(a, str) and a.strip() for a in attrs):
        return [f"bad_type: {where}.attributes must be a list of non-empty str"]
    return []


def _check_region(region: Any, where: str, width: int, height: int) -> list[str]:
    if not isinstance(region, dict) or "bbox" not in region or "captions" not in region:
        return [f"missing_field: {where} needs bbox and captions"]
    problems = _check_texts(region["captions"], f"{where}.captions", allow_empty_list=False)
    problems += _check_attributes(region, where)
    bad_box = check_bbox(region["bbox"], width, height)
    return problems + ([f"{bad_box} ({where})"] if bad_box else [])


def _check_object(obj: Any, where: str, width: int, height: int) -> list[str]:
    if not isinstance(obj, dict) or "bbox" not in obj or "label" not in obj:
        return [f"missing_field: {where} needs bbox and label"]
    problems = [] if isinstance(obj["label"], str) and obj["label"].strip() else [f"empty_label: {where}"]
    problems += _check_attributes(obj, where)
    bad_box = check_bbox(obj["bbox"], width, height)
    return problems + ([f"{bad_box} ({where})"] if bad_box else [])


def _check_header(record: Any, max_side: int | None) -> list[str]:
    if not isinstance(record, dict):
        return ["bad_type: record must be a dict"]
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        return [f"missing_field: {', '.join(missing)}"]
    problems = [f"bad_type: {k} must be a non-empty str" for k in ("image_id", "source")
                if not isinstance(record[k], str) or not record[k]]
    w, h = record["width"], record["height"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h)):
        return problems + [f"bad_size: width/height {w!r}x{h!r}"]
    if max_side is not None and max(w, h) > max_side:
        problems.append(f"image_too_large: {w}x{h} > {max_side}")
    for k in ("regions", "objects"):
        if not isinstance(record[k], list):
            problems.append(f"bad_type: {k} must be a list")
    return problems


def validate_record(record: Any, max_side: int | None = MAX_SIDE) -> list[str]:
    """Check a sample's json against the shard schema.

    Returns a list of problems, each ``"code: detail"`` (see :func:`problem_code`); an empty list means valid.
    Codes: missing_field, bad_type, bad_size, image_too_large, empty_caption, empty_label, bbox_malformed,
    bbox_empty, bbox_outside_image, no_text.
    """
    problems = _check_header(record, max_side)
    if problems:
        return problems
    w, h = record["width"], record["height"]
    problems += _check_texts(record["captions"], "captions", allow_empty_list=True)
    for i, region in enumerate(record["regions"]):
        problems += _check_region(region, f"regions[{i}]", w, h)
    for i, obj in enumerate(record["objects"]):
        problems += _check_object(obj, f"objects[{i}]", w, h)
    if not (record["captions"] or record["regions"] or record["objects"]):
        problems.append("no_text: no captions, regions or objects")
    return problems


def problem_code(problem: str) -> str:
    """The stable reason code of a problem returned by :func:`validate_record` (the part before ``:``)."""
    return problem.split(":", 1)[0]


# ------------------------------------------------------------------------------------------------ images
def resize_max_side(image: Image.Image, max_side: int = MAX_SIDE) -> tuple[Image.Image, float]:
    """Shrink ``image`` so its longer side is at most ``max_side``; returns the image and the scale applied."""
    longest = max(image.size)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BICUBIC), scale


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB image (4:4:4 chroma, no optimisation passes, so the output is deterministic)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def encode_json(record: dict) -> bytes:
    """Compact, deterministic UTF-8 json of a record (key order as given)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# ------------------------------------------------------------------------------------------------ manifest
@dataclass
class Manifest:
    """What a converter wrote: per-field counts, skipped samples by reason, shards with sizes, and its arguments."""

    source: str
    args: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_FIELDS, 0))
    skipped: dict[str, dict[str, Any]] = field(default_factory=dict)
    shards: list[dict[str, Any]] = field(default_factory=list)

    def count(self, record: dict) -> None:
        """Add one written sample's fields to the counts."""
        self.counts["images"] += 1
        self.counts["captions"] += len(record["captions"])
        self.counts["regions"] += len(record["regions"])
        self.counts["region_captions"] += sum(len(r["captions"]) for r in record["regions"])
        self.counts["objects"] += len(record["objects"])

    def skip(self, reason: str, key: str) -> None:
        """Record one skipped sample under ``reason`` (keeping a few example keys)."""
        entry = self.skipped.setdefault(reason, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < MAX_SKIP_EXAMPLES:
            entry["examples"].append(key)

    def add_shard(self, name: str, samples: int, nbytes: int) -> None:
        """Record one finished shard."""
        self.shards.append({"name": name, "samples": samples, "bytes": nbytes})

    def to_dict(self) -> dict[str, Any]:
        """The manifest as plain json-able data, with totals."""
        return {
            "source": self.source,
            "args": self.args,
            "counts": dict(self.counts),
            "skipped": {k: self.skipped[k] for k in sorted(self.skipped)},
            "skipped_total": sum(v["count"] for v in self.skipped.values()),
            "shards": list(self.shards),
            "total_bytes": sum(s["bytes"] for s in self.shards),
        }

    def write(self, path: str | os.PathLike) -> Path:
        """Write the manifest as indented json; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Manifest:
        """Read a manifest written by :meth:`write`."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(source=data["source"], args=data["args"], counts=data["counts"],
                   skipped=data["skipped"], shards=data["shards"])


# ------------------------------------------------------------------------------------------------ sink
class ShardSink:
    """Writes schema samples into ``out_dir/{prefix}-%06d.tar`` and ``out_dir/manifest.json``.

    Use as a context manager; the manifest is written on a clean exit (or by :meth:`close`). Shards roll over
    after ``max_count`` samples or once they hold ``max_size`` payload bytes. No file is created before the
    first sample, so an empty sink leaves only the manifest.
    """

    def __init__(self, out_dir: str | os.PathLike, prefix: str, max_count: int = 1000, max_size: float = 3e8,
                 source: str | None = None, args: dict[str, Any] | None = None, max_side: int | None = MAX_SIDE):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.max_count, self.max_size, self.max_side = max_count, max_size, max_side
        self.manifest = Manifest(source=source or prefix, args=dict(args or {}))
        self._writer: wds.ShardWriter | None = None
        self._in_shard = 0

    @property
    def pattern(self) -> str:
        """The ShardWriter pattern (``%`` in the directory name escaped)."""
        return str(self.out_dir).replace("%", "%%") + f"/{self.prefix}-%06d.tar"

    def _shard_done(self, fname: str) -> None:
        self.manifest.add_shard(Path(fname).name, self._in_shard, os.path.getsize(fname))
        self._in_shard = 0

    def _open(self) -> wds.ShardWriter:
        return wds.ShardWriter(self.pattern, maxcount=self.max_count, maxsize=self.max_size, post=self._shard_done,
                               verbose=0, encoder=False, mtime=0.0, user="", group="", mode=0o444)

    def write(self, key: str, jpg: bytes, record: dict) -> None:
        """Write one sample without checking it (use :meth:`add` to validate first)."""
        if not key or "." in key:
            raise ValueError(f"shard keys must be non-empty and dot-free (webdataset splits at '.'): {key!r}")
        if self._writer is None:
            self._writer = self._open()
        self._writer.write({"__key__": key, "jpg": bytes(jpg), "json": encode_json(record)})
        self._in_shard += 1
        self.manifest.count(record)

    def skip(self, reason: str, key: str) -> None:
        """Count a sample the converter decided not to write."""
        self.manifest.skip(reason, key)

    def add(self, key: str, jpg: bytes, record: dict) -> bool:
        """Validate ``record`` and write it, or count it as skipped under its first problem's code."""
        problems = validate_record(record, self.max_side)
        if problems:
            self.skip(problem_code(problems[0]), key)
            return False
        self.write(key, jpg, record)
        return True

    def close(self) -> Manifest:
        """Finish the last shard and write ``manifest.json``; returns the manifest."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.manifest.write(self.out_dir / "manifest.json")
        return self.manifest

    def __enter__(self) -> ShardSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._writer is not None:
            self._writer.close()
            self._writer = None


# ------------------------------------------------------------------------------------------------ reading
def read_samples(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Iterate a shard with plain ``tarfile``: yields ``{"__key__", "jpg": bytes, "json": dict}`` in order."""
    current: dict[str, Any] = {}
    with tarfile.open(path, "r") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = member.name.split(".", 1)
            if current and current["__key__"] != key:
                yield current
                current = {}
            data = tar.extractfile(member).read()
            current["__key__"] = key
            current[ext] = json.loads(data) if ext == "json" else data
    if current:
        yield current
