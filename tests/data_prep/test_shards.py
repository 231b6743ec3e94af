"""Tests of the shared shard writer: schema checks, manifest, determinism, readability."""

from __future__ import annotations

import copy
import io
import json
import tarfile
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from data_prep.shards import (
    Manifest,
    ShardSink,
    encode_jpeg,
    problem_code,
    read_samples,
    resize_max_side,
    validate_record,
)


@pytest.fixture
def record() -> dict:
    """A valid record of a 64x48 image."""
    return {
        "image_id": "test/0", "source": "test", "width": 64, "height": 48,
        "captions": ["a red ball", "a ball on grass"],
        "regions": [{"bbox": [0, 0, 64, 48], "captions": ["the whole thing"], "attributes": []},
                    {"bbox": [10.5, 5, 20, 10], "captions": ["red ball", "ball"], "attributes": ["round"]}],
        "objects": [{"bbox": [10, 5, 20, 10], "label": "ball", "attributes": ["red"]}],
    }


@pytest.fixture
def jpg() -> bytes:
    return encode_jpeg(Image.new("RGB", (64, 48), (200, 30, 30)))


def _codes(rec: dict, **kw) -> list[str]:
    return [problem_code(p) for p in validate_record(rec, **kw)]


def _samples(record: dict, n: int) -> list[tuple[str, dict]]:
    out = []
    for i in range(n):
        rec = copy.deepcopy(record)
        rec["image_id"] = f"test/{i}"
        rec["captions"] = rec["captions"][: 1 + i % 2]
        rec["objects"] = rec["objects"] * (i % 3)
        out.append((f"s{i:04d}", rec))
    return out


def _write(out: Path, record: dict, jpg: bytes, n: int = 7, max_count: int = 3) -> Manifest:
    with ShardSink(out, "t", max_count=max_count, source="test", args={"n": n}) as sink:
        for key, rec in _samples(record, n):
            sink.add(key, jpg, rec)
    return sink.manifest


# --------------------------------------------------------------------------------------------- validate_record
def test_valid_record_has_no_problems(record):
    assert validate_record(record) == []


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda r: r["regions"][1].update(bbox=[50, 5, 20, 10]), "bbox_outside_image"),  # x + w = 70 > 64
        (lambda r: r["objects"][0].update(bbox=[-1, 0, 5, 5]), "bbox_outside_image"),
        (lambda r: r["objects"][0].update(bbox=[10, 40, 5, 9]), "bbox_outside_image"),  # y + h = 49 > 48
        (lambda r: r["objects"][0].update(bbox=[10, 10, 0, 5]), "bbox_empty"),
        (lambda r: r["objects"][0].update(bbox=[10, 10, 5]), "bbox_malformed"),
        (lambda r: r["objects"][0].update(bbox=[10, 10, True, 5]), "bbox_malformed"),
        (lambda r: r["objects"][0].update(bbox=[10, 10, float("nan"), 5]), "bbox_malformed"),
        (lambda r: r["captions"].append("   "), "empty_caption"),
        (lambda r: r["regions"][0].update(captions=[]), "empty_caption"),
        (lambda r: r["regions"][0].update(captions=[""]), "empty_caption"),
        (lambda r: r["objects"][0].update(label=""), "empty_label"),
        (lambda r: r.pop("height"), "missing_field"),
        (lambda r: r.update(width=0), "bad_size"),
        (lambda r: r.update(captions="a red ball"), "bad_type"),
        (lambda r: r.update(captions=[], regions=[], objects=[]), "no_text"),
    ],
)
def test_validate_record_catches(record, edit, code):
    edit(record)
    assert code in _codes(record)


def test_box_touching_the_border_is_inside(record):
    record["objects"][0]["bbox"] = [0, 0, 64, 48]
    assert validate_record(record) == []


def test_max_side(record):
    assert "image_too_large" in _codes(record, max_side=60)
    assert validate_record(record, max_side=None) == []


def test_caption_only_record_is_valid(record):
    record["regions"], record["objects"] = [], []
    assert validate_record(record) == []


# ---------------------------------------------------------------------------------------------------- images
def test_resize_max_side_scales_the_longer_side():
    img, scale = resize_max_side(Image.new("RGB", (1000, 500)), 512)
    assert img.size == (512, 256) and scale == pytest.approx(0.512)
    small = Image.new("RGB", (100, 50))
    assert resize_max_side(small, 512) == (small, 1.0)


# ------------------------------------------------------------------------------------------------------ sink
def test_sink_shards_and_manifest_match_contents(tmp_path, record, jpg):
    manifest = _write(tmp_path, record, jpg, n=7, max_count=3)
    shards = sorted(tmp_path.glob("t-*.tar"))
    assert [p.name for p in shards] == ["t-000000.tar", "t-000001.tar", "t-000002.tar"]
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest.to_dict()
    assert on_disk["source"] == "test" and on_disk["args"] == {"n": 7}

    samples = [s for p in shards for s in read_samples(p)]
    assert [s["__key__"] for s in samples] == [f"s{i:04d}" for i in range(7)]
    counts = on_disk["counts"]
    assert counts["images"] == len(samples) == 7
    assert counts["captions"] == sum(len(s["json"]["captions"]) for s in samples)
    assert counts["regions"] == sum(len(s["json"]["regions"]) for s in samples)
    assert counts["region_captions"] == sum(len(r["captions"]) for s in samples for r in s["json"]["regions"])
    assert counts["objects"] == sum(len(s["json"]["objects"]) for s in samples)
    assert [(s["name"], s["samples"], s["bytes"]) for s in on_disk["shards"]] == [
        (p.name, n, p.stat().st_size) for p, n in zip(shards, [3, 3, 1], strict=True)]
    assert on_disk["total_bytes"] == sum(p.stat().st_size for p in shards)
    assert all(s["jpg"] == jpg for s in samples)


def test_sink_counts_skips_by_reason(tmp_path, record, jpg):
    bad_box = copy.deepcopy(record)
    bad_box["objects"][0]["bbox"] = [60, 0, 10, 10]
    empty = copy.deepcopy(record)
    empty["captions"] = [""]
    with ShardSink(tmp_path, "t", source="test") as sink:
        assert sink.add("good", jpg, record)
        assert not sink.add("bad1", jpg, bad_box)
        assert not sink.add("bad2", jpg, bad_box)
        assert not sink.add("empty", jpg, empty)
        sink.skip("decode_error", "broken")
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["counts"]["images"] == 1
    assert m["skipped"] == {
        "bbox_outside_image": {"count": 2, "examples": ["bad1", "bad2"]},
        "decode_error": {"count": 1, "examples": ["broken"]},
        "empty_caption": {"count": 1, "examples": ["empty"]},
    }
    assert m["skipped_total"] == 4
    assert [s["__key__"] for s in read_samples(tmp_path / "t-000000.tar")] == ["good"]


def test_sink_is_deterministic(tmp_path, record, jpg):
    _write(tmp_path / "a", record, jpg)
    _write(tmp_path / "b", record, jpg)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_tar_members_have_fixed_metadata(tmp_path, record, jpg):
    _write(tmp_path, record, jpg, n=2)
    with tarfile.open(tmp_path / "t-000000.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["s0000.jpg", "s0000.json", "s0001.jpg", "s0001.json"]
    assert all((m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "") for m in members)


def test_webdataset_reads_the_shards(tmp_path, record, jpg):
    _write(tmp_path, record, jpg, n=5, max_count=2)
    urls = [str(p) for p in sorted(tmp_path.glob("t-*.tar"))]
    ds = wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("__key__", "jpg", "json")
    got = list(ds)
    assert [k for k, _, _ in got] == [f"s{i:04d}" for i in range(5)]
    key, img, rec = got[4]
    assert img.size == (rec["width"], rec["height"]) == (64, 48)
    assert rec["image_id"] == "test/4"


def test_empty_sink_writes_only_a_manifest(tmp_path):
    with ShardSink(tmp_path, "t", source="test") as sink:
        sink.skip("no_image", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
    assert Manifest.load(tmp_path / "manifest.json").shards == []


def test_failed_conversion_leaves_no_manifest(tmp_path, record, jpg):
    with pytest.raises(RuntimeError), ShardSink(tmp_path, "t", source="test") as sink:
        sink.add("k", jpg, record)
        raise RuntimeError("converter crashed")
    assert not (tmp_path / "manifest.json").exists()


def test_keys_with_dots_are_refused(tmp_path, record, jpg):
    with ShardSink(tmp_path, "t") as sink, pytest.raises(ValueError, match="dot"):
        sink.write("img.001", jpg, record)


def test_max_size_rolls_shards(tmp_path, record):
    big = encode_jpeg(Image.effect_noise((64, 48), 80).convert("RGB"), quality=95)
    with ShardSink(tmp_path, "t", max_size=len(big) * 2.5) as sink:
        for i in range(6):
            sink.write(f"k{i}", big, record)
    assert [s["samples"] for s in sink.manifest.shards] == [3, 3]


def test_manifest_load_roundtrip(tmp_path, record, jpg):
    manifest = _write(tmp_path, record, jpg)
    assert Manifest.load(tmp_path / "manifest.json").to_dict() == manifest.to_dict()


def test_jpeg_is_decodable_and_deterministic():
    img = Image.effect_noise((40, 30), 50).convert("RGB")
    data = encode_jpeg(img)
    assert data == encode_jpeg(img)
    assert Image.open(io.BytesIO(data)).size == (40, 30)
