"""Fixtures of the converter tests: real photographs (skimage.data) saved as files, shard reading, box checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data as skdata

from data_prep.shards import read_samples, validate_record

MAGENTA = (255, 0, 255)
CYAN = (0, 255, 255)


def write_photo(path: Path, name: str = "coffee", box: list[float] | None = None, colour=MAGENTA,
                orientation: int | None = None, size: tuple[int, int] | None = None) -> Path:
    """Save the skimage photograph ``name`` (optionally resized to ``size``) as ``path`` (format from the suffix),
    with a filled ``colour`` rectangle at ``box`` ([x, y, w, h]) and an EXIF orientation tag if asked."""
    image = Image.fromarray(getattr(skdata, name)()).convert("RGB")
    if size:
        image = image.resize(size, Image.BICUBIC)
    if box:
        x, y, w, h = box
        ImageDraw.Draw(image).rectangle([x, y, x + w - 1, y + h - 1], fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    image.save(path, **({"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}), **kw)
    return path


def shard_samples(out: Path, check: bool = True) -> list[dict]:
    """Every sample of every ``*.tar`` under ``out``, in shard order (each record checked against the schema)."""
    samples = [s for p in sorted(Path(out).glob("*.tar")) for s in read_samples(p)]
    if check:
        for s in samples:
            assert validate_record(s["json"]) == [], s["json"]
    return samples


def image_of(sample: dict) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(sample["jpg"])).convert("RGB")).astype(int)


def assert_box_on_colour(sample: dict, bbox: list[float], colour=MAGENTA, tol: int = 60) -> None:
    """The stored box covers the coloured rectangle: its inside is ``colour`` and a ring just outside is not."""
    pixels = image_of(sample)
    x, y, w, h = bbox
    inner = pixels[int(y) + 2:int(y + h) - 1, int(x) + 2:int(x + w) - 1]
    assert inner.size and np.abs(inner - colour).max(axis=-1).mean() < tol / 3, bbox
    assert np.abs(inner - colour).max() < tol * 2
    x0, y0 = max(int(x) - 3, 0), max(int(y) - 3, 0)
    x1, y1 = min(int(x + w) + 3, pixels.shape[1] - 1), min(int(y + h) + 3, pixels.shape[0] - 1)
    ring = np.concatenate([pixels[y0, x0:x1], pixels[y1, x0:x1], pixels[y0:y1, x0], pixels[y0:y1, x1]])
    far = np.abs(ring - colour).max(axis=-1) > tol
    assert far.mean() > 0.9, f"box {bbox} does not end where the rectangle ends"


def skipped(manifest: dict) -> dict[str, int]:
    return {k: v["count"] for k, v in manifest["skipped"].items()}


def dropped(manifest: dict) -> dict[str, int]:
    return {k: v["count"] for k, v in manifest["dropped"].items()}


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


@dataclass
class Helpers:
    write_photo = staticmethod(write_photo)
    shard_samples = staticmethod(shard_samples)
    image_of = staticmethod(image_of)
    assert_box_on_colour = staticmethod(assert_box_on_colour)
    skipped = staticmethod(skipped)
    dropped = staticmethod(dropped)
    tree_bytes = staticmethod(tree_bytes)
    MAGENTA = MAGENTA
    CYAN = CYAN


@pytest.fixture
def conv() -> Helpers:
    """Helper functions of the converter tests (test modules cannot import each other under importlib mode)."""
    return Helpers()
