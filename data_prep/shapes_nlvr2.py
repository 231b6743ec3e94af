"""An NLVR2-style task folder from the shapes world: true/false statements about pairs of images.

    python -m data_prep.shapes_nlvr2 --shapes data/shapes --out data/shapes_tasks

Reads the shapes world's shards (``python -m data_prep.shapes``), writes their images under ``OUT/images/`` (shared
with ``data_prep.shapes_tasks``) and ``OUT/nlvr2/{train,dev,test1}.jsonl`` + ``manifest.json`` in the format of
``python -m data_prep.nlvr2``: ``{"images": [left, right], "image_id", "identifier", "sentence", "label": bool,
"sizes": [[w, h], [w, h]]}``. Pairs come from one split (train from the world's train images; dev and test1 from
the first and second half of its held-out images). Each statement is drawn for a label fixed in advance (true or
false with probability 1/2), so the labels are balanced and the majority baseline is about 50%. Statements:

- "both images contain a red shape" / "neither image contains a star" / "exactly one image contains a circle"
- "the left image contains a small blue square" / "the right image has no green shape"
- "the left image has more shapes than the right image" (fewer / the same number of shapes)
- "there are five shapes in total"
- "the right image shows two shapes: a small red circle and a large blue square" (a caption of one of the two
  images; drawn four times as often as each other kind)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.shapes_draw import COLOURS, KINDS, SIZES
from data_prep.shapes_tasks import FORMAT_VERSION, _samples, _write_jsonl

COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
TEMPLATES = ("both_colour", "neither_kind", "one_kind", "side_full", "side_shape", "side_no_colour", "more", "fewer",
             "same", "total", "side_caption")
#: how often each kind is drawn: "side_caption" (a caption of one of the two images, said of the left or the right
#: one) is the kind closest to the pre-training task, where a small demo model starts from
WEIGHTS = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4], dtype=float) / 14
Objects = list[dict[str, Any]]


def _has(objs: Objects, colour: str | None = None, kind: str | None = None, size: str | None = None) -> bool:
    return any((colour is None or o["attributes"][1] == colour) and (kind is None or o["label"] == kind)
               and (size is None or o["attributes"][0] == size) for o in objs)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _attribute(rng: np.random.Generator, pool: Objects, index: int, palette: tuple[str, ...]) -> str:
    """An attribute of a shape of the pair (half of the time) or any of the world's (so both truth values occur);
    ``index``: 0 size, 1 colour, -1 kind."""
    if pool and rng.random() < 0.5:
        o = pool[int(rng.integers(len(pool)))]
        return o["label"] if index < 0 else o["attributes"][index]
    return palette[int(rng.integers(len(palette)))]


def _statement(rng: np.random.Generator, template: str, left_rec: dict[str, Any],
               right_rec: dict[str, Any]) -> tuple[str, bool]:
    """A statement of kind ``template`` (one of :data:`TEMPLATES`) with drawn parameters, and its truth."""
    left, right = left_rec["objects"], right_rec["objects"]
    pool = left + right
    colour = _attribute(rng, pool, 1, tuple(COLOURS))
    kind = _attribute(rng, pool, -1, KINDS)
    size = _attribute(rng, pool, 0, tuple(SIZES))
    side, objs = ("left", left) if rng.random() < 0.5 else ("right", right)
    n = max(2, len(pool) + int(rng.choice([-1, 0, 1])))
    if template == "both_colour":
        return (f"both images contain {_article(colour)} {colour} shape",
                _has(left, colour=colour) and _has(right, colour=colour))
    if template == "neither_kind":
        return (f"neither image contains {_article(kind)} {kind}",
                not _has(left, kind=kind) and not _has(right, kind=kind))
    if template == "one_kind":
        return f"exactly one image contains {_article(kind)} {kind}", _has(left, kind=kind) != _has(right, kind=kind)
    if template == "side_full":
        return f"the {side} image contains {_article(size)} {size} {colour} {kind}", _has(objs, colour, kind, size)
    if template == "side_shape":
        return f"the {side} image contains {_article(colour)} {colour} {kind}", _has(objs, colour, kind)
    if template == "side_no_colour":
        return f"the {side} image has no {colour} shape", not _has(objs, colour)
    if template == "more":
        return "the left image has more shapes than the right image", len(left) > len(right)
    if template == "fewer":
        return "the left image has fewer shapes than the right image", len(left) < len(right)
    if template == "side_caption":
        source = left_rec if rng.random() < 0.5 else right_rec
        caption = source["captions"][int(rng.integers(len(source["captions"])))]
        owner = source if caption not in (right_rec if source is left_rec else left_rec)["captions"] else None
        return f"the {side} image shows {caption}", owner is (left_rec if side == "left" else right_rec)
    if template == "same":
        return "both images have the same number of shapes", len(left) == len(right)
    return f"there are {COUNT_WORDS.get(n, str(n))} shapes in total", len(pool) == n


def make_example(rng: np.random.Generator, records: list[dict[str, Any]], want: bool,
                 template: str) -> tuple[dict[str, Any], dict[str, Any], str, bool]:
    """(left, right, sentence, label): a statement of kind ``template`` that is ``want`` about a drawn pair; the
    parameters, then the pair, are redrawn until it is (so every kind is about as often true as false)."""
    for _ in range(200):
        j, k = (int(v) for v in rng.choice(len(records), size=2, replace=False))
        left, right = records[j], records[k]
        for _ in range(20):
            sentence, truth = _statement(rng, template, left, right)
            if truth == want:
                return left, right, sentence, truth
    return left, right, sentence, truth


def _examples(rng: np.random.Generator, records: list[dict[str, Any]], n: int, split: str) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        template = TEMPLATES[int(rng.choice(len(TEMPLATES), p=WEIGHTS))]
        left, right, sentence, label = make_example(rng, records, bool(rng.random() < 0.5), template)
        pair = f"{split}-{i:06d}"
        rows.append({"images": [left["image"], right["image"]], "image_id": f"shapes_nlvr2/{pair}",
                     "identifier": f"{pair}-0", "sentence": sentence, "label": label, "template": template,
                     "sizes": [[left["width"], left["height"]], [right["width"], right["height"]]]})
    return rows


def export_shapes_nlvr2(shapes: str | os.PathLike, out: str | os.PathLike, n_train: int = 6000, n_eval: int = 500,
                        seed: int = 0) -> Path:
    """Write ``out/nlvr2`` (and the images under ``out/images``); returns the task folder."""
    shapes, out = Path(shapes), Path(out)
    images = out / "images"
    train, held = _samples(shapes, "train", images), _samples(shapes, "val", images)
    half = len(held) // 2
    rng = np.random.default_rng(seed)
    splits = {"train": _examples(rng, train, n_train, "train"), "dev": _examples(rng, held[:half], n_eval, "dev"),
              "test1": _examples(rng, held[half:], n_eval, "test1")}
    folder = out / "nlvr2"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        _write_jsonl(folder / f"{name}.jsonl", rows)
    manifest = {"task": "nlvr2", "source": "shapes", "image_root": str(images.resolve()),
                "format_version": FORMAT_VERSION, "skipped": {},
                "splits": {n: {"records": len(r), "texts": len(r), "true": sum(x["label"] for x in r)}
                           for n, r in splits.items()}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.shapes_nlvr2", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", required=True, type=Path, help="the shapes world (python -m data_prep.shapes)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (the nlvr2 folder goes below it)")
    parser.add_argument("--train", type=int, default=6000, help="training examples")
    parser.add_argument("--eval", type=int, default=500, help="examples per evaluation split (dev, test1)")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    try:
        folder = export_shapes_nlvr2(a.shapes, a.out, a.train, a.eval, a.seed)
    except FileNotFoundError as err:
        parser.error(str(err))
    print(f"nlvr2 task folder written to {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
