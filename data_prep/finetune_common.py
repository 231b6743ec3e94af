"""The writer shared by the fine-tuning (downstream task) converters: lines per split -> ``<split>.jsonl`` +
``manifest.json`` (format: docs/finetune_data.md).

A converter streams :class:`Item` s (one future output line each: an image with its captions for retrieval, a
referred object with its expressions and box for grounding) or :class:`Skip` s (input records it could not use) to
:func:`write`. The writer finds each item's image among its candidate paths under the image root, reads the image's
size from its header (PIL opens lazily; the EXIF orientation is applied, so orientations 5-8 swap width and height),
maps a grounding box onto that upright image, and writes the line; whatever cannot be used is skipped and counted by
reason with example keys (never a crash, never silent loss).

Each split goes to ``.<split>.jsonl.tmp`` first; only when every line is written are the temporary files renamed into
place and ``manifest.json`` written last, so its presence marks a finished conversion, and a run that stops (killed,
truncated input) leaves the previous output as it was. A re-run with the same settings rewrites the same bytes for
the same inputs (lines keep the input order, keys a fixed order). A folder holding a finished conversion made with
other settings is refused before anything is read or written (``--overwrite`` replaces it). A run that keeps no line
of its input fails naming the likely cause (for missing images: the image root and the paths tried for one record),
writes ``manifest.failed.json`` with the counts and leaves any previous output untouched.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image
from tqdm import tqdm

from data_prep.convert import ConvertError, Tally
from data_prep.images import fit_box, orient_box
from data_prep.jsonstream import JsonStreamError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FAILED = "manifest.failed.json"
TASKS = ("retrieval", "grounding", "vqa", "nlvr2", "caption")
TEXT_FIELD = {"retrieval": "captions", "grounding": "texts", "vqa": "answers", "nlvr2": "sentence",
              "caption": "captions"}  # counted as the manifest's "texts" per split
TEXT_WORD = {"retrieval": "captions", "grounding": "expressions", "vqa": "answers", "nlvr2": "sentences",
             "caption": "captions"}
DUPLICATE = {"retrieval": "duplicate_image", "grounding": "duplicate_ref", "vqa": "duplicate_question",
             "nlvr2": "duplicate_example", "caption": "duplicate_image"}
CHUNK = 256  # items handed to the image-reading threads at a time
MAX_DETAIL = 600
SWAPPED = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 degrees
ASPECT_TOLERANCE = 0.01  # declared vs. stored aspect ratio: relative difference still taken as the same image
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_EXTRA_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.json$")
_COCO_NAME = re.compile(r"^(?:COCO_[A-Za-z]+\d{4}_)?0*(\d+)\.(?:jpe?g|png)$", re.IGNORECASE)


@dataclass
class Skip:
    """An input record, or a future line, that is not written: ``reason`` is the manifest code."""

    reason: str
    key: str
    detail: str = ""
    dropped: dict[str, int] = field(default_factory=dict)


@dataclass
class Item:
    """One future output line.

    Attributes:
        split: output split (``train``, ``val``, ``test``, ``testA``, ...).
        key: the name of the line in skip examples (e.g. ``coco/391895`` or ``ref 21``).
        unique: the key that must be unique in the whole folder (retrieval: the image id; grounding: the ref id).
        image_id: ``<source>/<published id>``.
        images: candidate image paths, relative to the image root (``/``-separated) or absolute, tried in order;
            the first that exists is written as the line's ``image``.
        fields: the task's fields, in output order (retrieval ``captions``; grounding ``ref_id``, ``texts``).
        bbox: grounding: the published ``[x, y, w, h]``, in pixels of ``frame`` (or of the file as stored).
        frame: grounding: the image size ``(width, height)`` the annotation declares, when it declares one.
        dropped: texts left out of this line, by reason.
        image_sets: several images per line (NLVR2's pair): the candidate paths of each image; when given,
            ``images`` is not used and the line has ``images: [path, ...]`` and ``sizes: [[w, h], ...]`` in place
            of ``image``, ``width`` and ``height``.
    """

    split: str
    key: str
    unique: str
    image_id: str
    images: Sequence[str]
    fields: dict[str, Any]
    bbox: Any = None
    frame: tuple[float, float] | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    image_sets: Sequence[Sequence[str]] | None = None


@dataclass
class Spec:
    """Where and how to write. ``args`` are the converter's own settings (input file names, ...): together with
    ``task``, ``source`` and ``image_root`` they are the settings a re-run over a finished folder must match."""

    task: str
    source: str
    out: Path
    image_root: Path
    splits: Sequence[str]  # always written (empty when no line falls in them), in this order; others follow
    args: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    workers: int = 4
    progress: bool = True
    hints: dict[str, str] = field(default_factory=dict)  # likely causes per skip reason, for the 0-kept error

    def settings(self) -> dict[str, Any]:
        return {"task": self.task, "source": self.source, "format_version": FORMAT_VERSION,
                "image_root": str(Path(self.image_root).resolve()), "args": self.args}


# ----------------------------------------------------------------------------------------------- helpers
def require_dir(path: str | os.PathLike, flag: str = "--images") -> Path:
    """The folder ``path``, or a :class:`ConvertError` naming it when it is not an existing folder."""
    p = Path(path)
    if not p.is_dir():
        what = "is a file, not a folder" if p.exists() else "does not exist"
        raise ConvertError(f"{flag} {path} {what}; give the folder that holds the images")
    return p


def require_file(path: str | os.PathLike, flag: str) -> Path:
    """The file ``path``, or a :class:`ConvertError` naming it when it does not exist."""
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a file" if p.exists() else "does not exist"
        raise ConvertError(f"{flag} {path} {what}")
    return p


def check_split_name(name: str) -> str:
    if not _SPLIT_NAME.match(name or ""):
        raise ConvertError(f"split name {name!r} must be letters, digits or '_' (it names the file <split>.jsonl)")
    return name


def guarded(items: Iterable[Any], path: str | os.PathLike) -> Iterator[Any]:
    """``items`` (streamed from the JSON file ``path``), with a malformed or truncated file turned into a
    :class:`ConvertError` naming the file."""
    try:
        yield from items
    except UnicodeDecodeError as err:
        raise ConvertError(f"{path} is not UTF-8 text ({err}): is it the JSON file?") from None
    except JsonStreamError as err:
        text = str(err).removeprefix(f"{path}: ")
        if "invalid JSON" in text or "end of file" in text:
            raise ConvertError(f"{path} is not complete, valid JSON ({text}); a truncated or interrupted "
                               f"download? Fetch the file again.") from None
        raise ConvertError(f"{path} does not have the expected layout ({text}): is it the right file?") from None


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def as_id(value: Any) -> int | str | None:
    """A published id: an int (digit strings become ints), another non-empty string, or None (missing/invalid)."""
    if is_int(value):
        return value
    if isinstance(value, str) and value.strip():
        return int(value) if value.strip().isdigit() else value.strip()
    return None


def image_id_from_name(source: str, path: str) -> str | None:
    """``coco/<id>`` for COCO file names (``COCO_val2014_000000391895.jpg``, ``000000391895.jpg``),
    ``<source>/<stem>`` for Flickr file names (``1000092795.jpg``); None for other names."""
    name = PurePosixPath(path.replace("\\", "/")).name
    if source == "coco":
        match = _COCO_NAME.match(name)
        return f"coco/{int(match.group(1))}" if match else None
    if source.startswith("flickr"):
        stem = name.rsplit(".", 1)[0]
        return f"{source}/{stem}" if stem.isdigit() else None
    return None


def candidates(path: str, subdirs: Sequence[str] = ()) -> list[str]:
    """Where an image named ``path`` (as an annotation file gives it) may lie under the image root: the path itself,
    each of its tails (``coco/train2014/x.jpg`` -> ``train2014/x.jpg`` -> ``x.jpg``), then ``<subdir>/<file name>``."""
    path = path.replace("\\", "/")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    out = [path] if path.startswith("/") else []
    out += ["/".join(parts[i:]) for i in range(len(parts))]
    if parts:
        out += [f"{d}/{parts[-1]}" for d in subdirs]
    return list(dict.fromkeys(out))


def texts_of(values: Any, where: str, dropped: Counter) -> list[str]:
    """The non-empty stripped strings of ``values`` (a str or a list); others are counted in ``dropped``
    (``empty_caption``, ``bad_caption``: not a string)."""
    if isinstance(values, str) or not isinstance(values, list | tuple):
        values = [values]
    out = []
    for text in values:
        if not isinstance(text, str):
            dropped["bad_caption"] += 1
        elif not text.strip():
            dropped["empty_caption"] += 1
        else:
            out.append(text.strip())
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


# ----------------------------------------------------------------------------------------------- one item
def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block: the image is used as stored
        return 1
    return value if 1 <= value <= 8 else 1


def _same_aspect(a: tuple[float, float], b: tuple[float, float]) -> bool:
    x, y = a[0] * b[1], a[1] * b[0]
    return abs(x - y) <= ASPECT_TOLERANCE * max(x, y)


def _frame(item: Item) -> tuple[float, float] | None:
    if item.frame is None:
        return None
    try:
        w, h = (float(v) for v in item.frame)
    except (TypeError, ValueError):
        return None
    return (w, h) if math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0 else None


def _box(item: Item, stored: tuple[int, int], orientation: int) -> tuple[list[float] | None, str, list[str]]:
    """The item's box in pixels of the upright image: ``(box, skip reason or "", adjustments)``."""
    upright = (stored[1], stored[0]) if orientation in SWAPPED else stored
    frame = _frame(item)
    if frame is None or _same_aspect(frame, stored):
        box, note = fit_box(item.bbox, frame or stored, stored)  # drawn on the pixels as stored (COCO's tools)
        if box is None:
            return None, note, []
        notes = [note] if note else []
        if frame and frame != stored:
            notes.append("bbox_rescaled")
        if orientation != 1:
            box = orient_box(box, orientation, stored)
            notes.append("bbox_exif_rotated")
        return box, "", notes
    if orientation in SWAPPED and _same_aspect(frame, upright):  # declared size is the upright one
        box, note = fit_box(item.bbox, frame, upright)
        if box is None:
            return None, note, []
        return box, "", [n for n in (note, "bbox_rescaled" if frame != upright else "") if n]
    return None, "size_mismatch", []


def _find(root: Path, paths: Sequence[str], cache: dict | None) -> tuple[str | None, tuple[int, int] | None, int,
                                                                      str]:
    """The first of ``paths`` that exists under ``root``, its stored size and EXIF orientation, or why not:
    ``(found, size, orientation, "")``, ``(None, None, 1, "tried ...")`` (missing) or ``(found, None, 1, error)``
    (unreadable). Results are kept in ``cache`` (keyed by the candidate paths) when one is given."""
    key = tuple(paths)
    if cache is not None and key in cache:
        return cache[key]
    found = next((c for c in paths if (root / c).is_file()), None)
    if found is None:
        result = (None, None, 1, "tried " + (", ".join(str(root / c) for c in paths) or "no path"))
    else:
        try:
            with Image.open(root / found) as image:
                result = (found, image.size, _orientation(image), "")
        except Exception as err:  # noqa: BLE001 - whatever PIL raises on a broken file, the line is skipped
            result = (found, None, 1, f"{root / found}: {type(err).__name__}: {err}")
    if cache is not None:
        cache[key] = result
    return result


def _inspect_sets(root: Path, item: Item, cache: dict | None) -> tuple[dict[str, Any] | None, Skip | None, list[str]]:
    found, sizes = [], []
    for index, paths in enumerate(item.image_sets or ()):
        path, stored, orientation, error = _find(root, paths, cache)
        if path is None:
            return None, Skip("missing_image", item.key, f"image {index}: {error}"), []
        if stored is None:
            return None, Skip("unreadable_image", item.key, f"image {index}: {error}"), []
        found.append(path)
        sizes.append([stored[1], stored[0]] if orientation in SWAPPED else [stored[0], stored[1]])
    if not found:
        return None, Skip("bad_record", item.key, "no image"), []
    return {"images": found, "image_id": item.image_id, "sizes": sizes, **item.fields}, None, []


def inspect(root: Path, item: Item | Skip, cache: dict | None = None) -> tuple[dict[str, Any] | None, Skip | None,
                                                                          list[str]]:
    """Find ``item``'s image and read its size (thread-safe): ``(line, None, adjustments)`` or ``(None, skip, [])``.
    ``cache`` (a dict shared by the calls of one conversion) saves re-reading an image that several lines share."""
    if isinstance(item, Skip):
        return None, item, []
    if item.image_sets is not None:
        return _inspect_sets(root, item, cache)
    found, stored, orientation, error = _find(root, item.images, cache)
    if found is None:
        return None, Skip("missing_image", item.key, error), []
    if stored is None:
        return None, Skip("unreadable_image", item.key, error), []
    width, height = (stored[1], stored[0]) if orientation in SWAPPED else stored
    line = {"image": found, "image_id": item.image_id, "width": width, "height": height, **item.fields}
    notes: list[str] = []
    if item.bbox is not None or "texts" in item.fields:
        box, reason, notes = _box(item, stored, orientation)
        if box is None:
            detail = f"bbox {item.bbox!r} on a {stored[0]}x{stored[1]} image"
            if reason == "size_mismatch":
                detail += f" declared {item.frame[0]}x{item.frame[1]}"
            return None, Skip(reason, item.key, detail), []
        line["bbox"] = box
    return line, None, notes


# ----------------------------------------------------------------------------------------------- the folder
def check_out(spec: Spec) -> dict[str, Any] | None:
    """Refuse ``spec.out`` when it holds a finished conversion made with other settings (unless ``overwrite``);
    returns that conversion's manifest (None when there is none). Nothing is changed here."""
    out = Path(spec.out)
    if out.exists() and not out.is_dir():
        raise ConvertError(f"--out {out} is a file, not a folder")
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        if spec.overwrite:
            return None
        raise ConvertError(f"{path} is not readable ({err}); pass --overwrite to replace the folder's conversion "
                           f"or choose another --out") from None
    if not isinstance(old, dict):
        old = {}
    mine = spec.settings()
    theirs = {k: old.get(k) for k in mine}
    if theirs != mine and not spec.overwrite:
        diff = ", ".join(f"{k}: {theirs[k]!r} there, {mine[k]!r} now" for k in mine if theirs[k] != mine[k])
        raise ConvertError(f"{out} holds a finished conversion made with other settings ({diff}); nothing was "
                           f"changed. Pass --overwrite to replace it, or choose another --out")
    return old


_HINTS = {
    "bad_record": "the records do not have the published layout (is it the right file for this command?)",
    "unknown_split": "the records' split names are not the published ones",
    "no_text": "no record has a non-empty caption/expression (is it the right file?)",
    "unreadable_image": "the image files do not decode (truncated downloads, or not images?)",
    "size_mismatch": "the image files have other aspect ratios than the annotation declares: are they the images "
                     "of this annotation release?",
    "bbox_outside_image": "the boxes lie outside the images: are they the images of this annotation release?",
    "duplicate_image": "every image appears twice (the same file given for two splits?)",
    "duplicate_ref": "every ref appears twice (the same file given for two splits?)",
    "duplicate_question": "every question appears twice (the same file given twice?)",
    "duplicate_example": "every example appears twice (the same file given for two splits?)",
}


def _shorten(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def empty_message(spec: Spec, manifest: dict[str, Any]) -> str:
    """Why a run kept no line: the skip counts, the most frequent reason's likely cause, what to check."""
    skipped, records = manifest["skipped"], manifest["input_records"]
    if not skipped:
        return (f"{spec.source}: the input holds no records ({records} read); is it the right file? "
                f"No manifest.json was written.")
    reason = max(skipped, key=lambda r: (skipped[r]["count"], r))
    counts = ", ".join(f"{r}={v['count']}" for r, v in sorted(skipped.items(), key=lambda kv: -kv[1]["count"]))
    lines = [f"{spec.source}: no line kept of {records} input record(s) (skipped: {counts})."]
    detail = manifest["skipped_detail"].get(reason)
    examples = ", ".join(skipped[reason]["examples"][:3])
    if reason == "missing_image":
        lines.append(f"No image file was found for {skipped[reason]['count']} record(s); images were searched under "
                     f"{Path(spec.image_root).resolve()}.")
        lines.append(f"e.g. {_shorten(detail)}" if detail else f"e.g. {examples}")
        lines.append("Check --images: it must be the folder that holds the image files under the names (and "
                     "sub-folders) that the annotation files give.")
    else:
        hint = spec.hints.get(reason) or _HINTS.get(reason)
        end = "" if hint and hint.endswith(("?", ".")) else "."
        lines.append(f"Most were skipped as {reason} (e.g. {examples})" + (f": {hint}" if hint else "") + end)
        if detail:
            lines.append(f"e.g. {_shorten(detail)}")
    lines.append(f"No manifest.json was written; skip counts and examples are in {Path(spec.out) / FAILED}.")
    return "\n".join(lines)


def _line_text(line: dict[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False) + "\n"


def write(items: Iterable[Item | Skip], spec: Spec, input_records: Callable[[], int] | None = None,
          ignored: Callable[[], dict[str, int]] | None = None,
          on_line: Callable[[str, dict[str, Any]], None] | None = None,
          finish: Callable[[dict[str, Any]], dict[str, str]] | None = None) -> dict[str, Any]:
    """Write ``items`` into ``spec.out`` (see the module doc); returns the manifest.

    ``input_records`` tells, once ``items`` is exhausted, how many input records were read (for the manifest and
    the 0-kept error; default: the number of items). ``ignored`` gives counts of auxiliary input entries that were
    unusable but cost no line by themselves (e.g. instances entries without an id), for the manifest's ``ignored``.
    ``on_line(split, line)`` sees every line written, in order. ``finish(manifest)``, called once every line is
    written and at least one was kept, may add entries to the manifest and returns extra files of the folder
    (``{name: text}``, e.g. ``answer_list.json``, ``test_gt.json``): they are written and renamed into place with
    the split files, before ``manifest.json``, and listed in the manifest's ``files``; a :class:`ConvertError` it
    raises leaves the folder as it was.
    """
    if spec.task not in TASKS:
        raise ConvertError(f"unknown task {spec.task!r} (one of {', '.join(TASKS)})")
    old = check_out(spec)
    out, root = Path(spec.out), Path(spec.image_root)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob(".*.jsonl.tmp"), *out.glob(".*.json.tmp")]:
        stale.unlink()  # left by a run that was killed
    splits: dict[str, dict[str, int]] = {check_split_name(s): {"records": 0, "texts": 0} for s in spec.splits}
    files: dict[str, Any] = {}
    skipped, dropped, adjusted, details = Tally(), Tally(), Counter(), {}
    seen: set[str] = set()
    duplicate = DUPLICATE[spec.task]
    n_items = 0
    text_field = TEXT_FIELD[spec.task]
    extras: dict[str, str] = {}
    look = partial(inspect, cache={})

    def skip(s: Skip) -> None:
        skipped.add(s.reason, s.key)
        if s.detail and s.reason not in details:
            details[s.reason] = f"{s.key}: {s.detail}"[:MAX_DETAIL]

    def tmp(split: str) -> Path:
        return out / f".{split}.jsonl.tmp"

    bar = tqdm(unit="rec", desc=f"{spec.task} {spec.source}", disable=not spec.progress, dynamic_ncols=True)
    try:
        with bar, ThreadPoolExecutor(max(1, spec.workers)) as pool:
            for chunk in _chunks(items, CHUNK):
                n_items += len(chunk)
                results = map(look, [root] * len(chunk), chunk) if spec.workers <= 1 else \
                    pool.map(look, [root] * len(chunk), chunk)
                for item, (line, skipped_item, notes) in zip(chunk, results, strict=True):
                    for reason, n in sorted(item.dropped.items()):
                        if n:
                            dropped.add(reason, item.key, n)
                    if skipped_item is not None:
                        skip(skipped_item)
                        continue
                    if item.unique in seen:
                        skip(Skip(duplicate, item.key, f"{item.unique} appears again (in split {item.split})"))
                        continue
                    seen.add(item.unique)
                    adjusted.update(notes)
                    split = check_split_name(item.split)
                    if split not in files:
                        files[split] = open(tmp(split), "w", encoding="utf-8", newline="\n")  # noqa: SIM115
                    files[split].write(_line_text(line))
                    counts = splits.setdefault(split, {"records": 0, "texts": 0})
                    counts["records"] += 1
                    texts = line.get(text_field, ())
                    counts["texts"] += 1 if isinstance(texts, str) else len(texts)
                    if on_line is not None:
                        on_line(split, line)
                bar.update(len(chunk))
        for f in files.values():
            f.close()
        for split in splits:
            if split not in files:
                tmp(split).write_text("", encoding="utf-8")
        records = input_records() if input_records else n_items
        manifest = {**spec.settings(), "splits": splits, "input_records": records,
                    "skipped": skipped.to_dict(), "skipped_total": skipped.total(),
                    "skipped_detail": dict(sorted(details.items())), "dropped": dropped.to_dict(),
                    "dropped_total": dropped.total(), "adjusted": dict(sorted(adjusted.items())),
                    "ignored": {k: v for k, v in sorted((ignored() if ignored else {}).items()) if v}}
        if not any(s["records"] for s in splits.values()):
            _atomic_write(out / FAILED, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
            raise ConvertError(empty_message(spec, manifest))
        if finish is not None:
            extras = finish(manifest)
            for name, text in extras.items():
                if not _EXTRA_NAME.match(name) or name in (MANIFEST, FAILED):
                    raise ConvertError(f"extra file name {name!r} is not allowed")
                (out / f".{name}.tmp").write_text(text, encoding="utf-8", newline="\n")
            if extras:
                manifest["files"] = sorted(extras)
        (out / MANIFEST).unlink(missing_ok=True)  # from here on the folder is not a finished conversion
        for split in splits:
            os.replace(tmp(split), out / f"{split}.jsonl")
        for name in extras:
            os.replace(out / f".{name}.tmp", out / name)
        for split in (old or {}).get("splits") or {}:
            if isinstance(split, str) and split not in splits and _SPLIT_NAME.match(split):
                (out / f"{split}.jsonl").unlink(missing_ok=True)
        old_files = (old or {}).get("files")
        for name in old_files if isinstance(old_files, list) else ():
            if isinstance(name, str) and name not in extras and _EXTRA_NAME.match(name) \
                    and name not in (MANIFEST, FAILED):
                (out / name).unlink(missing_ok=True)
        (out / FAILED).unlink(missing_ok=True)
        _atomic_write(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        return manifest
    finally:
        for f in files.values():
            f.close()
        for split in splits:
            tmp(split).unlink(missing_ok=True)
        for name in extras:
            (out / f".{name}.tmp").unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- CLI helpers
def add_common_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("output")
    g.add_argument("--out", required=True, type=Path, help="output folder (<split>.jsonl + manifest.json)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace a finished conversion in --out that was made with other settings")
    g.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                   help="threads reading image headers (the output does not depend on it)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def report(manifest: dict[str, Any], out: Path, seconds: float) -> None:
    """Print a short summary of a finished conversion."""
    text = TEXT_WORD.get(manifest["task"], "texts")
    parts = [f"{s} {c['records']} lines ({c['texts']} {text})" for s, c in manifest["splits"].items()]
    print(f"{manifest['task']} {manifest['source']}: " + ", ".join(parts) + f" under {out} ({seconds:.1f}s)")
    for title, key in (("skipped", "skipped"), ("dropped texts", "dropped"), ("adjusted", "adjusted")):
        if manifest.get(key):
            values = manifest[key]
            print(f"  {title}: " + ", ".join(f"{k}={v['count'] if isinstance(v, dict) else v}"
                                           for k, v in values.items()))
    for split, counts in manifest["splits"].items():
        if not counts["records"]:
            print(f"  warning: split {split} has no line ({out / (split + '.jsonl')} is empty)", file=sys.stderr)


def cli(parser: argparse.ArgumentParser, convert: Callable[[argparse.Namespace], dict[str, Any]],
        argv: list[str] | None) -> int:
    """Parse ``argv``, run ``convert(namespace) -> manifest``, print the summary; input errors exit with 2."""
    a = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        manifest = convert(a)
    except (ConvertError, FileNotFoundError, JsonStreamError) as err:
        parser.error(str(err))
    report(manifest, a.out, time.perf_counter() - start)
    return 0
