"""A VQA task folder from the shapes world: questions about colour, kind, size, count and relations.

    python -m data_prep.shapes_vqa --shapes data/shapes --out data/shapes_tasks/vqa [--images data/shapes_tasks/images]

Reads the shapes world's shards (``python -m data_prep.shapes``), writes their images under ``--images`` (default
``OUT/images``; an image already there is kept, so the folder can share ``data_prep.shapes_tasks``' images) and
the vqa format of :mod:`xvlm_lit.data.tasks.vqa`: ``train`` (the world's train split), ``val`` and ``test`` (the
two halves of its held-out split), ``answer_list.json`` and ``manifest.json``.

Per image, up to ``--per-image`` questions of distinct types, drawn from those the image supports without
ambiguity (the object asked about must be the only one of its kind, colour or position):

- count: "how many shapes are there?", "how many red shapes are there?" -> "0".."4";
- colour: "what color is the square?" -> "red";
- kind: "what shape is red?", "what shape is at the top left?" -> "square";
- size: "is the star small or large?" -> "small";
- relation: "is the red circle left of the blue star?" -> "yes" / "no" (half of them ask the true relation).

Each question gets 10 human answers: the true one, each replaced with probability ``--noise`` by another answer of
the same type (so the VQA accuracy is soft, as with real annotators); ``answer_weights`` = count / 10.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.shapes_draw import COLOURS, KINDS, SIZES, Shape
from data_prep.shapes_tasks import FORMAT_VERSION, _samples, _write_jsonl
from data_prep.shapes_text import RELATIONS, position, relation

NUM_ANSWERS = 10
#: the answers each question type can have (the noise draws from them)
POOLS: dict[str, list[str]] = {
    "count": [str(n) for n in range(5)],
    "colour": list(COLOURS),
    "kind": list(KINDS),
    "size": list(SIZES),
    "relation": ["yes", "no"],
}


def shapes_of(record: dict[str, Any]) -> list[Shape]:
    """The record's objects as shapes (label = kind, attributes = [size, colour])."""
    return [Shape(o["label"], o["attributes"][1], o["attributes"][0], tuple(o["bbox"])) for o in record["objects"]]


def _unique(shapes: list[Shape], key) -> list[Shape]:
    counts = Counter(key(s) for s in shapes)
    return [s for s in shapes if counts[key(s)] == 1]


def candidate_questions(rng: np.random.Generator, shapes: list[Shape], size_px: int) -> dict[str, list[tuple]]:
    """Question type -> list of (question, answer) this image supports unambiguously."""
    out: dict[str, list[tuple[str, str]]] = {t: [] for t in POOLS}
    out["count"].append(("how many shapes are there?", str(len(shapes))))
    colour = str(rng.choice(list(COLOURS)))
    out["count"].append((f"how many {colour} shapes are there?", str(sum(s.colour == colour for s in shapes))))
    for s in _unique(shapes, lambda s: s.kind):
        out["colour"].append((f"what color is the {s.kind}?", s.colour))
        out["size"].append((f"is the {s.kind} small or large?", s.size))
    for s in _unique(shapes, lambda s: s.colour):
        out["kind"].append((f"what shape is {s.colour}?", s.kind))
    for s in _unique(shapes, lambda s: position(s, size_px)):
        out["kind"].append((f"what shape is {position(s, size_px)}?", s.kind))
    for i, a in enumerate(shapes):
        for j, b in enumerate(shapes):
            if i == j:
                continue
            true = relation(a, b)
            asked = true if rng.random() < 0.5 else str(rng.choice([r for r in RELATIONS if r != true]))
            out["relation"].append((f"is the {a.colour} {a.kind} {asked} the {b.colour} {b.kind}?",
                                    "yes" if asked == true else "no"))
    return {t: qs for t, qs in out.items() if qs}


def human_answers(rng: np.random.Generator, answer: str, kind: str, noise: float) -> list[str]:
    """``NUM_ANSWERS`` answers: ``answer``, each replaced with probability ``noise`` by another of its type."""
    others = [a for a in POOLS[kind] if a != answer]
    return [str(rng.choice(others)) if others and rng.random() < noise else answer for _ in range(NUM_ANSWERS)]


def questions_for(record: dict[str, Any], rng: np.random.Generator, per_image: int, noise: float,
                  first_id: int) -> list[dict[str, Any]]:
    """The vqa lines of one shapes record (question ids from ``first_id``)."""
    shapes = shapes_of(record)
    cands = candidate_questions(rng, shapes, int(record["width"]))
    types = [str(t) for t in rng.permutation(sorted(cands))][:per_image]
    rows = []
    for n, kind in enumerate(types):
        question, answer = cands[kind][int(rng.integers(len(cands[kind])))]
        answers = human_answers(rng, answer, kind, noise)
        weights = {a: c / len(answers) for a, c in Counter(answers).items()}
        rows.append({"image": record["image"], "image_id": record["image_id"], "width": record["width"],
                     "height": record["height"], "question_id": first_id + n, "question": question,
                     "answers": answers, "answer_weights": weights, "dataset": "vqa", "question_type": kind})
    return rows


def export_shapes_vqa(shapes: str | os.PathLike, out: str | os.PathLike, images: str | os.PathLike | None = None,
                      per_image: int = 3, noise: float = 0.1, seed: int = 0) -> Path:
    """Write the vqa folder ``out`` from the shapes world at ``shapes``; returns ``out``."""
    if not 0 <= noise < 0.5:
        raise ValueError(f"noise must be in [0, 0.5) (the true answer must stay the majority), got {noise}")
    if per_image < 1:
        raise ValueError(f"per_image must be >= 1, got {per_image}")
    shapes, out = Path(shapes), Path(out)
    image_root = Path(images) if images is not None else out / "images"
    train, held = _samples(shapes, "train", image_root), _samples(shapes, "val", image_root)
    half = len(held) // 2
    rng = np.random.default_rng(seed)
    next_id = 1
    splits: dict[str, list[dict[str, Any]]] = {}
    for name, records in (("train", train), ("val", held[:half]), ("test", held[half:])):
        rows = []
        for record in records:
            rows += questions_for(record, rng, per_image, noise, next_id)
            next_id += per_image
        splits[name] = rows
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        _write_jsonl(out / f"{name}.jsonl", rows)
    answer_list = sorted({a for pool in POOLS.values() for a in pool})
    (out / "answer_list.json").write_text(json.dumps(answer_list) + "\n", encoding="utf-8")
    manifest = {"task": "vqa", "source": "shapes", "image_root": str(image_root.resolve()),
                "format_version": FORMAT_VERSION, "skipped": {}, "answer_list": "answer_list.json",
                "splits": {n: {"records": len(r), "answers": sum(len(x["answers"]) for x in r)}
                           for n, r in splits.items()}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.shapes_vqa", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", required=True, type=Path, help="the shapes world (python -m data_prep.shapes)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--images", type=Path, default=None, help="where the images go (default OUT/images)")
    parser.add_argument("--per-image", type=int, default=3, help="questions per image (distinct types)")
    parser.add_argument("--noise", type=float, default=0.1, help="probability that a human answer is another one")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    try:
        out = export_shapes_vqa(a.shapes, a.out, a.images, a.per_image, a.noise, a.seed)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    print(f"vqa folder written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
