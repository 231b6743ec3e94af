"""Fine-tuning folders from the shapes world: retrieval, grounding (with a detections file for weak grounding).

    python -m data_prep.shapes_tasks --shapes data/shapes --out data/shapes_tasks

Reads the shapes world's shards (``python -m data_prep.shapes``), writes its images as files under
``OUT/images/{train,val}/`` and two task folders in the format of docs/finetune_data.md:

- ``OUT/retrieval``: one line per image with its captions; splits train (the world's train split), val and test
  (the first and second half of the world's held-out split);
- ``OUT/grounding``: one line per region with its descriptions and box, same splits; ``OUT/grounding/dets.json``
  maps each held-out image id to candidate boxes: every true region box of the image plus ``--distractors``
  random boxes, the candidates a weakly supervised model chooses among.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.shards import read_samples

FORMAT_VERSION = 1


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


def _samples(shapes: Path, split: str, images: Path) -> list[dict[str, Any]]:
    """The split's records, each with ``image`` (relative path) after writing its jpg under ``images``."""
    out = []
    (images / split).mkdir(parents=True, exist_ok=True)
    for tar in sorted((shapes / split).glob("*.tar")):
        for sample in read_samples(tar):
            rel = f"{split}/{sample['__key__']}.jpg"
            if not (images / rel).is_file():
                (images / rel).write_bytes(sample["jpg"])
            out.append({**sample["json"], "image": rel})
    if not out:
        raise FileNotFoundError(f"no shards under {shapes / split}: generate the world first "
                                f"(python -m data_prep.shapes --out {shapes})")
    return out


def _retrieval(rec: dict[str, Any]) -> dict[str, Any]:
    return {"image": rec["image"], "image_id": rec["image_id"], "width": rec["width"], "height": rec["height"],
            "captions": rec["captions"]}


def _grounding(rec: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"image": rec["image"], "image_id": rec["image_id"], "width": rec["width"], "height": rec["height"],
             "ref_id": f"{rec['image_id']}/{j}", "texts": r["captions"], "bbox": r["bbox"]}
            for j, r in enumerate(rec["regions"]) if r["captions"]]


def _distractors(rng: np.random.Generator, n: int, width: int, height: int) -> list[list[float]]:
    boxes = []
    for _ in range(n):
        w, h = (float(v) for v in rng.uniform(0.12, 0.4, 2) * (width, height))
        x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
        boxes.append([round(x, 1), round(y, 1), round(w, 1), round(h, 1)])
    return boxes


def _write_task(out: Path, task: str, splits: dict[str, list[dict[str, Any]]], image_root: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        _write_jsonl(out / f"{name}.jsonl", rows)
    manifest = {"task": task, "source": "shapes", "image_root": str(image_root.resolve()),
                "format_version": FORMAT_VERSION, "skipped": {},
                "splits": {n: {"records": len(r), "texts": sum(len(x.get("captions", x.get("texts", [])))
                                                               for x in r)} for n, r in splits.items()}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def export_shapes_tasks(shapes: str | os.PathLike, out: str | os.PathLike, distractors: int = 3,
                        seed: int = 0) -> Path:
    """Write ``out/{images,retrieval,grounding}`` from the shapes world at ``shapes``; returns ``out``."""
    shapes, out = Path(shapes), Path(out)
    images = out / "images"
    train, held = _samples(shapes, "train", images), _samples(shapes, "val", images)
    half = len(held) // 2
    parts = {"train": train, "val": held[:half], "test": held[half:]}
    _write_task(out / "retrieval", "retrieval", {k: [_retrieval(r) for r in v] for k, v in parts.items()}, images)
    _write_task(out / "grounding", "grounding",
                {k: [g for r in v for g in _grounding(r)] for k, v in parts.items()}, images)
    rng = np.random.default_rng(seed)
    dets = {r["image_id"]: [list(map(float, g["bbox"])) for g in r["regions"]]
            + _distractors(rng, distractors, r["width"], r["height"]) for r in held}
    (out / "grounding" / "dets.json").write_text(json.dumps(dets) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.shapes_tasks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", required=True, type=Path, help="the shapes world (python -m data_prep.shapes)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--distractors", type=int, default=3, help="random candidate boxes per image in dets.json")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    try:
        out = export_shapes_tasks(a.shapes, a.out, a.distractors, a.seed)
    except FileNotFoundError as err:
        parser.error(str(err))
    print(f"task folders written under {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
