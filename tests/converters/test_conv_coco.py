"""COCO converter on fixtures in the published formats (captions/instances json, Karpathy dataset_coco.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep import coco, convert
from data_prep.shards import read_samples

BOX = [100, 80, 200, 120]  # magenta cup on coffee (600x400)
EXIF_BOX = [40, 30, 120, 60]  # cyan rectangle drawn on the stored pixels of an EXIF-rotated file (451x300 stored)


def _img(image_id: int, split: str = "train2014", w: int = 600, h: int = 400) -> dict:
    return {"id": image_id, "file_name": f"COCO_{split}_{image_id:012d}.jpg", "width": w, "height": h,
            "license": 1, "coco_url": "", "date_captured": ""}


def _dir(split: str) -> str:
    return "val2014" if split in ("test", "val") else "train2014"


@pytest.fixture
def coco_fixture(tmp_path, conv) -> dict:
    root = tmp_path / "coco"
    train = root / "train2014"
    conv.write_photo(train / "COCO_train2014_000000000009.jpg", "coffee", BOX)
    conv.write_photo(train / "COCO_train2014_000000000025.jpg", "chelsea")
    conv.write_photo(root / "val2014" / "COCO_val2014_000000000030.jpg", "astronaut")
    conv.write_photo(root / "val2014" / "COCO_val2014_000000000034.jpg", "rocket")
    (train / "COCO_train2014_000000000042.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    conv.write_photo(train / "COCO_train2014_000000000049.jpg", "chelsea")
    conv.write_photo(train / "COCO_train2014_000000000061.jpg", "chelsea", EXIF_BOX, conv.CYAN, orientation=6)
    images = [_img(9), _img(25, w=451, h=300), _img(30, "val2014", 512, 512), _img(34, "val2014", 640, 427),
              _img(36), _img(42), _img(49, w=451, h=300), _img(61, w=451, h=300)]
    caps = [(9, "A cup of coffee on a saucer."), (9, "Coffee in a white cup"), (9, "..."), (25, "A cat lying down"),
            (30, "An astronaut in a suit"), (34, "A rocket on the pad"), (36, "no image for this one"),
            (42, "broken file"), (49, "!!! ?"), (61, "a cat photographed sideways")]
    captions = {"info": {}, "licenses": [], "images": images,
                "annotations": [{"image_id": i, "id": n, "caption": c} for n, (i, c) in enumerate(caps)]}
    anns = [(9, BOX, 47), (9, [700, 10, 50, 50], 47), (9, [10, 10, 0, 20], 47), (9, [560, 350, 60, 60], 51),
            (61, EXIF_BOX, 17)]
    instances = {"info": {}, "licenses": [], "images": images,
                 "categories": [{"id": 47, "name": "cup", "supercategory": "kitchen"},
                                {"id": 51, "name": "bowl", "supercategory": "kitchen"},
                                {"id": 17, "name": "cat", "supercategory": "animal"}],
                 "annotations": [{"id": n, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3],
                                  "iscrowd": 0, "segmentation": [[0, 0, 1, 1, 2, 2]]}
                                 for n, (i, b, c) in enumerate(anns)]}
    split = {9: "train", 25: "restval", 30: "test", 34: "val", 36: "train", 42: "train", 49: "train", 61: "train"}
    karpathy = {"dataset": "coco", "images": [
        {"filepath": _dir(s), "filename": f"COCO_{_dir(s)}_{i:012d}.jpg", "imgid": n,
         "split": s, "cocoid": i, "sentids": [n], "sentences": [{"raw": f"raw sentence {i}.", "tokens": [], "imgid": n,
                                                                  "sentid": n}]}
        for n, (i, s) in enumerate(split.items())]}
    ann = tmp_path / "annotations"
    ann.mkdir()
    for name, obj in (("captions_train2014.json", captions), ("instances_train2014.json", instances),
                      ("dataset_coco.json", karpathy)):
        (ann / name).write_text(json.dumps(obj))
    return {"images": root, "captions": [str(ann / "captions_train2014.json")],
            "instances": [str(ann / "instances_train2014.json")], "karpathy": str(ann / "dataset_coco.json")}


def _run(fx: dict, out: Path, **kw) -> dict:
    kw = {"max_side": 256, "shard_size": 2, "workers": 1, "progress": False, **kw}
    return coco.convert_coco(fx["images"], out, fx["captions"], fx["instances"], fx["karpathy"], **kw)


def test_coco_records_survive_and_broken_ones_are_counted(coco_fixture, tmp_path, conv):
    manifest = _run(coco_fixture, tmp_path / "out")
    samples = {s["json"]["image_id"]: s for s in conv.shard_samples(tmp_path / "out")}
    assert sorted(samples) == ["coco/25", "coco/61", "coco/9"]
    rec = samples["coco/9"]["json"]
    assert rec["captions"] == ["A cup of coffee on a saucer.", "Coffee in a white cup"]
    assert (rec["width"], rec["height"]) == (256, 171)
    assert [o["label"] for o in rec["objects"]] == ["cup", "bowl"]  # the bowl box is clipped (more than half inside)
    conv.assert_box_on_colour(samples["coco/9"], rec["objects"][0]["bbox"])
    sx, sy = 256 / 600, 171 / 400  # per-axis scale of the stored size (171 = round(400 * 256 / 600))
    assert rec["objects"][0]["bbox"] == pytest.approx([BOX[0] * sx, BOX[1] * sy, BOX[2] * sx, BOX[3] * sy], abs=0.01)
    assert conv.skipped(manifest) == {"karpathy_eval": 2, "missing_image": 1, "unreadable_image": 1, "empty_caption": 1}
    assert conv.dropped(manifest) == {"bbox_outside_image": 1, "bbox_empty": 1, "empty_caption": 2}
    assert manifest["counts"] == {"images": 3, "captions": 4, "regions": 0, "region_captions": 0, "objects": 3}
    assert manifest["adjusted"] == {"bbox_clipped": 1, "bbox_exif_rotated": 1, "exif_rotated": 1}
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest


def test_coco_exif_rotated_image_carries_its_boxes(coco_fixture, tmp_path, conv):
    _run(coco_fixture, tmp_path / "out")
    sample = next(s for s in conv.shard_samples(tmp_path / "out") if s["json"]["image_id"] == "coco/61")
    rec = sample["json"]
    assert (rec["width"], rec["height"]) == (170, 256)  # stored 451x300 landscape, orientation 6: upright portrait
    conv.assert_box_on_colour(sample, rec["objects"][0]["bbox"], conv.CYAN)


def test_coco_karpathy_eval_images_are_excluded_unless_asked(coco_fixture, tmp_path, conv):
    manifest = _run(coco_fixture, tmp_path / "out")
    ids = {s["json"]["image_id"] for s in conv.shard_samples(tmp_path / "out")}
    assert not ids & {"coco/30", "coco/34"}
    assert sorted(manifest["skipped"]["karpathy_eval"]["examples"]) == ["000000000030", "000000000034"]
    kept = _run(coco_fixture, tmp_path / "all", include_karpathy_eval=True)
    ids = {s["json"]["image_id"] for s in conv.shard_samples(tmp_path / "all")}
    assert {"coco/30", "coco/34"} <= ids and "karpathy_eval" not in kept["skipped"]
    with pytest.raises(convert.ConvertError, match="karpathy"):
        coco.convert_coco(coco_fixture["images"], tmp_path / "x", coco_fixture["captions"])


def test_coco_captions_from_karpathy_alone(coco_fixture, tmp_path, conv):
    coco.convert_coco(coco_fixture["images"], tmp_path / "k", karpathy=coco_fixture["karpathy"], max_side=128,
                      progress=False, workers=1)
    recs = {s["json"]["image_id"]: s["json"] for s in conv.shard_samples(tmp_path / "k")}
    assert recs["coco/9"]["captions"] == ["raw sentence 9."] and recs["coco/9"]["objects"] == []
    assert "coco/30" not in recs


def test_coco_resume_after_kill_is_byte_identical(coco_fixture, tmp_path, conv, monkeypatch):
    whole = tmp_path / "whole"
    _run(coco_fixture, whole, workers=2)
    killed = tmp_path / "killed"
    monkeypatch.setenv(convert.FAIL_ENV, "1")
    with pytest.raises(RuntimeError, match="stopping"):
        _run(coco_fixture, killed)
    assert [p.name for p in killed.glob("*.tar")] == ["coco-000000.tar"] and not (killed / "manifest.json").exists()
    (killed / ".coco-000001.tar.tmp").write_bytes(b"half a shard from the killed worker")
    monkeypatch.delenv(convert.FAIL_ENV)
    _run(coco_fixture, killed)
    assert conv.tree_bytes(killed) == conv.tree_bytes(whole)
    # the last shard deleted with its part (a kill while it was written) is rebuilt identically; shard 1 has only
    # broken records: an empty tar keeps the numbering contiguous
    assert list(read_samples(killed / "coco-000001.tar")) == []
    (killed / "coco-000002.tar").unlink()
    (killed / "parts" / "coco-000002.json").unlink()
    _run(coco_fixture, killed)
    assert conv.tree_bytes(killed) == conv.tree_bytes(whole)


def test_coco_rerun_with_other_settings_needs_overwrite(coco_fixture, tmp_path):
    _run(coco_fixture, tmp_path / "out")
    with pytest.raises(convert.ConvertError, match="overwrite"):
        _run(coco_fixture, tmp_path / "out", max_side=128)
    assert _run(coco_fixture, tmp_path / "out", max_side=128, overwrite=True)["counts"]["images"] == 3


def test_coco_cli_help_and_run(coco_fixture, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        coco.main(["--help"])
    assert exc.value.code == 0 and "--karpathy" in capsys.readouterr().out
    fx = coco_fixture
    assert coco.main(["--images", str(fx["images"]), "--captions", *fx["captions"], "--karpathy", fx["karpathy"],
                      "--out", str(tmp_path / "cli"), "--max-side", "64", "--workers", "1", "--no-progress"]) == 0
    assert "3 images" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        coco.main(["--images", str(fx["images"]), "--captions", *fx["captions"], "--out", str(tmp_path / "c2")])
    assert exc.value.code == 2
