"""Tests of the synthetic shapes world: determinism, manifests, boxes, drawing and captions."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep import shapes
from data_prep.shapes_draw import COLOURS, KINDS
from data_prep.shards import read_samples, validate_record

N_TRAIN, N_VAL, SHARD = 120, 40, 50
DESC = rf"(?:(small|large) )?({'|'.join(COLOURS)}) ({'|'.join(KINDS)})"
RELATION_RE = re.compile(rf"{DESC} (left of|right of|above|below) (?:a|an|the) {DESC}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small corpus drawn by one process."""
    out = tmp_path_factory.mktemp("shapes") / "one"
    return shapes.generate_shapes_world(out, N_TRAIN, N_VAL, seed=3, size=128, shard_size=SHARD, workers=1)


@pytest.fixture(scope="module")
def samples(corpus) -> dict[str, list[dict]]:
    """Every sample of each split, read back with plain tarfile."""
    return {split: [s for p in sorted((corpus / split).glob("*.tar")) for s in read_samples(p)]
            for split in ("train", "val")}


@pytest.fixture(scope="module")
def records(samples) -> list[dict]:
    return [s["json"] for split in samples.values() for s in split]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _centre(box: list[int]) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def _boxes_by_name(rec: dict) -> dict[tuple[str, str], list[int]]:
    return {(o["attributes"][1], o["label"]): o["bbox"] for o in rec["objects"]}


# ------------------------------------------------------------------------------------------------ corpus files
def test_same_seed_gives_identical_bytes_whatever_the_workers(corpus, tmp_path):
    again = shapes.generate_shapes_world(tmp_path / "two", N_TRAIN, N_VAL, seed=3, size=128, shard_size=SHARD,
                                         workers=2)
    assert _files(corpus) == _files(again)


def test_other_seed_gives_other_images(corpus, tmp_path):
    other = shapes.generate_shapes_world(tmp_path / "s", 10, 0, seed=4, size=128, shard_size=SHARD)
    first = next(read_samples(corpus / "train" / "shapes-000000.tar"))
    assert next(read_samples(other / "train" / "shapes-000000.tar"))["jpg"] != first["jpg"]


def test_split_sizes_and_shards(corpus, samples):
    assert len(samples["train"]) == N_TRAIN and len(samples["val"]) == N_VAL
    assert sorted(p.name for p in (corpus / "train").glob("*.tar")) == [f"shapes-00000{i}.tar" for i in range(3)]
    info = json.loads((corpus / "shapes.json").read_text())
    assert info["args"] == {"version": shapes.VERSION, "n_train": N_TRAIN, "n_val": N_VAL, "seed": 3, "size": 128,
                            "shard_size": SHARD}
    assert info["splits"]["train"] == {"samples": N_TRAIN, "shards": [f"shapes-00000{i}.tar" for i in range(3)]}
    ids = [s["json"]["image_id"] for split in samples.values() for s in split]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("split", ["train", "val"])
def test_manifest_counts_match_the_tars(corpus, samples, split):
    m = json.loads((corpus / split / "manifest.json").read_text())
    recs = [s["json"] for s in samples[split]]
    assert m["counts"] == {
        "images": len(recs),
        "captions": sum(len(r["captions"]) for r in recs),
        "regions": sum(len(r["regions"]) for r in recs),
        "region_captions": sum(len(c["captions"]) for r in recs for c in r["regions"]),
        "objects": sum(len(r["objects"]) for r in recs),
    }
    assert m["skipped_total"] == 0
    shard_paths = sorted((corpus / split).glob("*.tar"))
    assert [(s["name"], s["bytes"]) for s in m["shards"]] == [(p.name, p.stat().st_size) for p in shard_paths]
    assert [s["samples"] for s in m["shards"]] == [sum(1 for _ in read_samples(p)) for p in shard_paths]


# ----------------------------------------------------------------------------------------------- boxes, pixels
def test_records_are_valid_and_boxes_inside(records):
    for rec in records:
        assert validate_record(rec) == []
        for item in rec["regions"] + rec["objects"]:
            x, y, w, h = item["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= rec["width"] and y + h <= rec["height"]


def _palette_counts(pixels: np.ndarray) -> dict[str, int]:
    """Pixels of each palette colour (nearest colour, within a distance that excludes the light background)."""
    names = list(COLOURS)
    palette = np.array([COLOURS[n] for n in names], dtype=np.float32)
    dist = np.linalg.norm(pixels.reshape(-1, 1, 3).astype(np.float32) - palette[None], axis=-1)
    nearest, close = dist.argmin(1), dist.min(1) < 70
    return {n: int(((nearest == i) & close).sum()) for i, n in enumerate(names)}


def test_object_box_is_dominated_by_its_colour(samples):
    for s in samples["train"][:60]:
        img = np.asarray(Image.open(io.BytesIO(s["jpg"])).convert("RGB"))
        for obj in s["json"]["objects"]:
            x, y, w, h = obj["bbox"]
            counts = _palette_counts(img[y:y + h, x:x + w])
            colour = obj["attributes"][1]
            assert max(counts, key=counts.get) == colour, (s["__key__"], obj, counts)
            assert counts[colour] >= 0.25 * w * h


def test_boxes_are_tight(samples):
    """Each 2-px edge strip of an unoccluded box shows the shape's colour; the ring just outside hardly any."""
    for s in samples["train"][:40]:
        img = np.asarray(Image.open(io.BytesIO(s["jpg"])).convert("RGB"))
        objs = s["json"]["objects"]
        if len(objs) != 1:
            continue
        x, y, w, h = objs[0]["bbox"]
        colour = objs[0]["attributes"][1]
        box = img[y:y + h, x:x + w]
        for strip in (box[:2], box[-2:], box[:, :2], box[:, -2:]):
            assert _palette_counts(strip)[colour] > 0, (s["__key__"], objs[0])
        inner = _palette_counts(box)[colour]
        x0, y0 = max(x - 2, 0), max(y - 2, 0)
        outer = _palette_counts(img[y0:y + h + 2, x0:x + w + 2])[colour]
        assert outer - inner <= 0.1 * inner


def test_sizes_are_clearly_apart(records):
    sides = {"small": [], "large": []}
    for rec in records:
        for obj in rec["objects"]:
            sides[obj["attributes"][0]].append(max(obj["bbox"][2:]))
    assert max(sides["small"]) * 1.3 < min(sides["large"])


def test_composition_varies(records):
    objs = [o for r in records for o in r["objects"]]
    assert {o["attributes"][1] for o in objs} == set(COLOURS) and len(COLOURS) >= 6
    assert {o["label"] for o in objs} == set(KINDS) and len(KINDS) >= 4
    assert {o["attributes"][0] for o in objs} == {"small", "large"}
    assert {len(r["objects"]) for r in records} == {1, 2, 3, 4}
    firsts = [r["captions"][0] for r in records]
    assert len(set(firsts)) >= 0.95 * len(firsts)


def test_some_shapes_overlap(records):
    def overlap(a, b):
        return min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0]) and min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1])

    boxes = [[o["bbox"] for o in r["objects"]] for r in records]
    assert any(overlap(a, b) for bs in boxes for i, a in enumerate(bs) for b in bs[i + 1:])


# ---------------------------------------------------------------------------------------------------- language
def test_captions_name_every_shape(records):
    for rec in records:
        assert 2 <= len(rec["captions"]) <= 3
        for cap in rec["captions"]:
            for obj in rec["objects"]:
                assert f"{obj['attributes'][1]} {obj['label']}" in cap, (cap, obj)


def test_relations_agree_with_box_centres(records):
    checked = 0
    for rec in records:
        boxes = _boxes_by_name(rec)
        texts = rec["captions"] + [c for r in rec["regions"] for c in r["captions"]]
        for text in texts:
            for m in RELATION_RE.finditer(text):
                (ax, ay), (bx, by) = _centre(boxes[m[2], m[3]]), _centre(boxes[m[6], m[7]])
                rel = m[4]
                assert {"left of": ax < bx, "right of": ax > bx, "above": ay < by, "below": ay > by}[rel], text
                checked += 1
    assert checked > len(records)


def test_left_to_right_caption_is_ordered(records):
    for rec in records:
        cap = rec["captions"][2]
        if not cap.startswith("from left to right"):
            continue
        boxes = _boxes_by_name(rec)
        xs = [_centre(boxes[m[2], m[3]])[0] for m in re.finditer(DESC, cap)]
        assert len(xs) == len(rec["objects"]) and xs == sorted(xs)


def test_regions_cover_every_shape_and_some_pairs(records):
    for rec in records:
        single = [r for r in rec["regions"] if len(r["captions"]) == 2]
        assert sorted(map(tuple, (r["bbox"] for r in single))) == sorted(tuple(o["bbox"]) for o in rec["objects"])
        pairs = [r for r in rec["regions"] if len(r["captions"]) == 1]
        assert len(pairs) == min(2, len(rec["objects"]) * (len(rec["objects"]) - 1) // 2)
        for obj, reg in zip(rec["objects"], single, strict=True):
            assert reg["captions"][0] == f"{obj['attributes'][0]} {obj['attributes'][1]} {obj['label']}"


# ------------------------------------------------------------------------------------------------- entry points
def test_ensure_reuses_a_matching_corpus_and_regenerates_otherwise(tmp_path, monkeypatch):
    kw = {"n_train": 6, "n_val": 2, "seed": 0, "size": 96, "shard_size": 4}
    out = shapes.ensure_shapes_world(tmp_path, **kw)
    assert json.loads((out / "shapes.json").read_text())["args"]["size"] == 96
    calls = []
    real = shapes.generate_shapes_world
    monkeypatch.setattr(shapes, "generate_shapes_world", lambda *a, **k: calls.append(a) or real(*a, **k))
    shapes.ensure_shapes_world(tmp_path, **kw)
    assert calls == []
    shapes.ensure_shapes_world(tmp_path, **{**kw, "seed": 1})
    assert len(calls) == 1
    (tmp_path / "train" / "shapes-000001.tar").unlink()
    shapes.ensure_shapes_world(tmp_path, **{**kw, "seed": 1})
    assert len(calls) == 2 and (tmp_path / "train" / "shapes-000001.tar").is_file()


def test_regeneration_removes_stale_shards(tmp_path):
    shapes.generate_shapes_world(tmp_path, 9, 0, shard_size=3)
    shapes.generate_shapes_world(tmp_path, 4, 0, shard_size=3)
    assert sorted(p.name for p in (tmp_path / "train").glob("*.tar")) == ["shapes-000000.tar", "shapes-000001.tar"]


@pytest.mark.parametrize("size", [96, 160])
def test_image_sizes(tmp_path, size):
    shapes.generate_shapes_world(tmp_path, 4, 0, size=size)
    for s in read_samples(tmp_path / "train" / "shapes-000000.tar"):
        assert Image.open(io.BytesIO(s["jpg"])).size == (size, size)
        assert (s["json"]["width"], s["json"]["height"]) == (size, size)
        assert validate_record(s["json"]) == []


def test_cli(tmp_path, capsys):
    assert shapes.main(["--out", str(tmp_path), "--train", "5", "--val", "3", "--shard-size", "2"]) == 0
    assert "train: 5 samples in 3 shards" in capsys.readouterr().out
    assert len(list((tmp_path / "val").glob("*.tar"))) == 2
    with pytest.raises(SystemExit) as exc:
        shapes.main(["--out", str(tmp_path), "--size", "64"])
    assert exc.value.code == 2


def test_colour_names_match_their_rgb():
    r, g, b = (np.array([COLOURS[n] for n in ("red", "green", "blue")]).T)
    assert r.argmax() == 0 and g.argmax() == 1 and b.argmax() == 2
    assert np.ptp(COLOURS["red"]) > 100 and max(COLOURS["black"]) < 80
    assert min(COLOURS["yellow"][:2]) > 180 > COLOURS["yellow"][2]
    assert COLOURS["orange"][0] > COLOURS["orange"][1] > COLOURS["orange"][2]
    assert COLOURS["purple"][0] > COLOURS["purple"][1] < COLOURS["purple"][2]


def test_ensure_waits_for_another_process_generating_and_reuses_its_corpus(tmp_path):
    """The jobs of a sweep share one data directory: a second caller blocks on the lock while the first one
    generates, then reuses that corpus instead of reading it half-written or writing it again."""
    import fcntl
    import subprocess
    import sys
    import time

    out = tmp_path / "shapes"
    args = dict(n_train=12, n_val=4, seed=0, size=96, shard_size=6)
    call = (f"from data_prep.shapes import ensure_shapes_world; "
            f"ensure_shapes_world({str(out)!r}, **{args!r}); print('done')")
    with open(tmp_path / "shapes.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # this process is "generating"
        waiting = subprocess.Popen([sys.executable, "-c", call], cwd=Path(__file__).resolve().parents[2],
                                   stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        assert waiting.poll() is None and not out.exists()  # blocked, wrote nothing
        shapes.generate_shapes_world(out, **args)
        stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert waiting.communicate(timeout=120)[0].strip() == "done" and waiting.returncode == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamp  # reused, not rewritten
