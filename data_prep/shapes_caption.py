"""A captioning task folder from the shapes world (the format of ``python -m data_prep.coco_caption``).

    python -m data_prep.shapes_caption --shapes data/shapes --out data/shapes_tasks

Reads the shapes world's shards (``python -m data_prep.shapes``), writes their images under ``OUT/images/`` (shared
with ``data_prep.shapes_tasks``) and ``OUT/caption/``: ``{train,val,test}.jsonl`` (one line per image: ``{"image",
"image_id", "width", "height", "captions"}``; train = the world's train split, val / test = the first / second half
of its held-out split), ``{val,test}_gt.json`` in COCO caption format (the references pycocoevalcap scores
against) and ``manifest.json``. Every image has the world's three captions (relations, a listing, left to right).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from data_prep.shapes_tasks import FORMAT_VERSION, _samples, _write_jsonl


def coco_gt(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """COCO caption ground truth (``images`` + ``annotations`` with running ids) of caption records."""
    anns = [{"image_id": r["image_id"], "id": 0, "caption": c} for r in rows for c in r["captions"]]
    for i, ann in enumerate(anns):
        ann["id"] = i
    return {"info": {"description": "shapes world captions"}, "licenses": [], "type": "captions",
            "images": [{"id": r["image_id"], "width": r["width"], "height": r["height"]} for r in rows],
            "annotations": anns}


def export_shapes_caption(shapes: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write ``out/caption`` (and the images under ``out/images``); returns the task folder."""
    shapes, out = Path(shapes), Path(out)
    images = out / "images"
    train, held = _samples(shapes, "train", images), _samples(shapes, "val", images)
    half = len(held) // 2
    fields = ("image", "image_id", "width", "height", "captions")
    splits = {name: [{k: r[k] for k in fields} for r in rows]
              for name, rows in (("train", train), ("val", held[:half]), ("test", held[half:]))}
    folder = out / "caption"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        _write_jsonl(folder / f"{name}.jsonl", rows)
        if name != "train":
            (folder / f"{name}_gt.json").write_text(json.dumps(coco_gt(rows)) + "\n", encoding="utf-8")
    manifest = {"task": "caption", "source": "shapes", "image_root": str(images.resolve()),
                "format_version": FORMAT_VERSION, "skipped": {},
                "splits": {n: {"records": len(r), "texts": sum(len(x["captions"]) for x in r)}
                           for n, r in splits.items()}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.shapes_caption", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", required=True, type=Path, help="the shapes world (python -m data_prep.shapes)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (the caption folder goes below it)")
    a = parser.parse_args(argv)
    try:
        folder = export_shapes_caption(a.shapes, a.out)
    except FileNotFoundError as err:
        parser.error(str(err))
    print(f"caption task folder written to {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
