"""Reading a task annotation folder (``manifest.json`` + ``<split>.jsonl``, see docs/finetune_data.md)."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from xvlm_lit.data.images import load_rgb
from xvlm_lit.data.skips import SkipCounter

log = logging.getLogger("xvlm_lit.data")
REQUIRED = {"retrieval": ("image", "image_id", "captions"), "grounding": ("image", "image_id", "texts", "bbox")}


class TaskDataError(ValueError):
    """A task folder or split that cannot be used (the message names the file and says what to do)."""


@dataclass
class TaskSplit:
    """The usable records of one split; ``skipped`` counts the lines left out by reason."""

    task: str
    split: str
    records: list[dict[str, Any]]
    image_root: Path
    skipped: dict[str, int] = field(default_factory=dict)

    def image_path(self, record: dict[str, Any]) -> Path:
        path = Path(record["image"])
        return path if path.is_absolute() else self.image_root / path


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise TaskDataError(f"{path} not found: convert the dataset first (python -m data_prep.karpathy, "
                            "data_prep.refer, data_prep.xvlm_finetune; see docs/finetune_data.md)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise TaskDataError(f"{path}: not valid JSON ({err}); re-run the converter") from err


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_record(record: Any, task: str) -> str | None:
    """The skip reason of a malformed ``retrieval`` / ``grounding`` record, or None: ``bad_json`` (not an object, a
    required field missing), ``wrong_type`` (image not a path string, texts not a list), ``no_caption`` (no
    non-empty text), ``bbox_malformed`` (not 4 finite numbers) / ``bbox_empty`` (no area)."""
    if not isinstance(record, dict):
        return "bad_json"
    if any(k not in record for k in REQUIRED[task]):
        return "bad_json"
    if not isinstance(record["image"], str) or not record["image"]:
        return "wrong_type"
    texts = record["captions" if task == "retrieval" else "texts"]
    if not isinstance(texts, list):
        return "wrong_type"
    if not any(isinstance(t, str) and t.strip() for t in texts):
        return "no_caption"
    if task == "grounding":
        box = record["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            return "bbox_malformed"
        if box[2] <= 0 or box[3] <= 0:
            return "bbox_empty"
    return None


def read_split(root: str | os.PathLike, split: str, task: str, limit: int | None = None,
               counter: SkipCounter | None = None, check: Callable[[Any], str | None] | None = None,
               convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None, hint: str = "") -> TaskSplit:
    """The records of ``<root>/<split>.jsonl`` (at most ``limit``); malformed lines are skipped and counted.

    ``check(record) -> reason | None`` validates a line (default: the retrieval/grounding fields), ``convert``
    normalises a kept record, ``hint`` is appended to the wrong-task error (how to make the right folder).
    """
    manifest = read_manifest(root)
    if manifest.get("task") != task:
        raise TaskDataError(f"{Path(root) / 'manifest.json'} holds task {manifest.get('task')!r}, not {task!r}"
                            + (f" ({hint})" if hint else ""))
    path = Path(root) / f"{split}.jsonl"
    if not path.is_file():
        have = sorted(p.stem for p in Path(root).glob("*.jsonl"))
        raise TaskDataError(f"{path} not found: the splits here are {have}")
    counter = counter or SkipCounter(str(path))
    check = check or (lambda record: check_record(record, task))
    records: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fp:
        for line_no, line in enumerate(fp, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            reason = check(record)
            if reason:
                counter.skip(reason, f"{path}:{line_no}")
                continue
            records.append(convert(record) if convert else record)
            if limit is not None and len(records) >= limit:
                break
    root_dir = Path(manifest.get("image_root") or root)
    return TaskSplit(task, split, records, root_dir, dict(counter.totals))


def open_image(path: Path) -> Image.Image:
    """The upright RGB image at ``path``.

    Raises:
        BadImage (an OSError): its ``reason`` (``missing_image``, ``corrupt_image``, ``image_too_large``) is the skip
        reason to count (``image_skip_reason(err)``).
    """
    return load_rgb(path, exif=True)
