"""Visual Genome converter on fixtures in the published v1.2/v1.4 schema, read in lock-step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep import convert, vg

SPOON = [600, 300, 80, 60]  # magenta rectangle on coffee resized to 800x600


def _region(rid: int, image_id: int, box: list, phrase: str) -> dict:
    return {"region_id": rid, "image_id": image_id, "x": box[0], "y": box[1], "width": box[2], "height": box[3],
            "phrase": phrase}


def _object(oid: int, box: list, names: list[str], attributes: list[str] | None = None) -> dict:
    obj = {"object_id": oid, "x": box[0], "y": box[1], "w": box[2], "h": box[3], "names": names, "synsets": []}
    if attributes is not None:
        obj["attributes"] = attributes
    return obj


@pytest.fixture
def vg_fixture(tmp_path, conv) -> dict:
    root = tmp_path / "vg"
    conv.write_photo(root / "VG_100K_2" / "1.jpg", "coffee", SPOON, size=(800, 600))
    conv.write_photo(root / "VG_100K" / "2.jpg", "astronaut")
    (root / "VG_100K").mkdir(exist_ok=True)
    (root / "VG_100K" / "4.jpg").write_bytes(b"GIF89a broken")
    conv.write_photo(root / "VG_100K" / "5.jpg", "chelsea")
    url = "https://cs.stanford.edu/people/rak248/{}/{}.jpg"
    image_data = [{"image_id": 1, "url": url.format("VG_100K_2", 1), "width": 800, "height": 600, "coco_id": None,
                   "flickr_id": 11},
                  {"image_id": 2, "url": url.format("VG_100K", 2), "width": 512, "height": 512, "coco_id": 30,
                   "flickr_id": None},
                  {"image_id": 3, "url": url.format("VG_100K", 3), "width": 640, "height": 480, "coco_id": 77,
                   "flickr_id": None},
                  {"image_id": 4, "url": url.format("VG_100K", 4), "width": 640, "height": 480, "coco_id": None,
                   "flickr_id": None},
                  {"image_id": 5, "url": url.format("VG_100K", 5), "width": 451, "height": 300, "coco_id": None,
                   "flickr_id": None}]
    regions = [
        {"id": 1, "regions": [_region(10, 1, [100, 80, 500, 400], "A white cup of coffee"),
                              _region(11, 1, SPOON, "the pink spoon"),
                              _region(12, 1, [790, 590, 100, 100], "off the edge"),
                              _region(13, 1, [5, 5, 0, 30], "zero width"),
                              _region(14, 1, [10, 10, 40, 40], " ... "),
                              _region(15, 1, [0, 0, 800, 600], "a white cup of coffee.")]},
        {"id": 2, "regions": [_region(20, 2, [0, 0, 10, 10], "eval image")]},
        {"id": 3, "regions": [_region(30, 3, [0, 0, 10, 10], "no file")]},
        {"id": 4, "regions": [_region(40, 4, [0, 0, 10, 10], "broken file")]},
        {"id": 5, "regions": [_region(50, 5, [0, 0, 451, 300], "a cat on a bed"),
                              _region(51, 5, [0, 0, 400, 300], "A cat on a bed!")]},
    ]
    objects = [{"image_id": 1, "image_url": "", "objects": [_object(100, SPOON, ["spoon"]),
                                                            _object(101, [100, 80, 500, 400], ["cup"]),
                                                            _object(102, [10, 10, 5, 5], ["  "])]},
               {"image_id": 2, "objects": []}, {"image_id": 3, "objects": []}, {"image_id": 4, "objects": []},
               {"image_id": 5, "objects": [_object(500, [50, 40, 300, 200], ["cat"])]}]
    attributes = [{"image_id": 1, "attributes": [_object(100, SPOON, ["spoon"], ["pink", "metal", " "]),
                                                 _object(101, [100, 80, 500, 400], ["cup"])]},
                  {"image_id": 2, "attributes": []}, {"image_id": 3, "attributes": []},
                  {"image_id": 4, "attributes": []},
                  {"image_id": 5, "attributes": [_object(500, [50, 40, 300, 200], ["cat"], ["orange"])]}]
    karpathy = {"images": [{"cocoid": 30, "split": "test", "filepath": "val2014", "filename": "a.jpg",
                            "sentences": []},
                           {"cocoid": 77, "split": "train", "filepath": "train2014", "filename": "b.jpg",
                            "sentences": []}]}
    files = {}
    for name, obj in (("image_data", image_data), ("regions", regions), ("objects", objects),
                      ("attributes", attributes), ("karpathy", karpathy)):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(obj))
    return {"images": root, **{k: str(v) for k, v in files.items()}}


def _run(fx: dict, out: Path, **kw) -> dict:
    kw = {"max_side": 256, "shard_size": 2, "workers": 1, "progress": False, **kw}
    return vg.convert_vg(fx["images"], fx["image_data"], out, fx["regions"], fx["objects"], fx["attributes"],
                         fx["karpathy"], **kw)


def test_vg_regions_objects_attributes_and_captions(vg_fixture, tmp_path, conv):
    manifest = _run(vg_fixture, tmp_path / "out")
    samples = {s["json"]["image_id"]: s for s in conv.shard_samples(tmp_path / "out")}
    assert sorted(samples) == ["vg/1", "vg/5"]
    rec = samples["vg/1"]["json"]
    assert (rec["width"], rec["height"]) == (256, 192)
    assert [r["captions"] for r in rec["regions"]] == [["A white cup of coffee"], ["the pink spoon"],
                                                       ["a white cup of coffee."]]
    assert rec["captions"] == ["A white cup of coffee"]  # large regions only, duplicates (after cleaning) once
    spoon = rec["regions"][1]["bbox"]
    assert spoon == pytest.approx([v * 256 / 800 for v in SPOON], abs=0.01)
    conv.assert_box_on_colour(samples["vg/1"], spoon)
    assert [(o["label"], o["attributes"]) for o in rec["objects"]] == [("spoon", ["pink", "metal"]), ("cup", [])]
    conv.assert_box_on_colour(samples["vg/1"], rec["objects"][0]["bbox"])
    cat = samples["vg/5"]["json"]
    assert cat["captions"] == ["a cat on a bed"] and len(cat["regions"]) == 2
    assert cat["objects"][0]["attributes"] == ["orange"]
    assert conv.skipped(manifest) == {"karpathy_eval": 1, "missing_image": 1, "unreadable_image": 1}
    assert conv.dropped(manifest) == {"bbox_empty": 1, "bbox_outside_image": 1, "empty_attribute": 1,
                                      "empty_caption": 1, "empty_label": 1}
    assert manifest["counts"]["regions"] == 5 and manifest["counts"]["objects"] == 3


def test_vg_files_out_of_step_are_an_error(vg_fixture, tmp_path):
    original = json.loads(Path(vg_fixture["regions"]).read_text())
    regions = [original[0], original[2], original[1], *original[3:]]
    Path(vg_fixture["regions"]).write_text(json.dumps(regions))
    with pytest.raises(convert.ConvertError, match=r"regions.json: entry 2 is image 3 but entry 2 of .* is image 2"):
        _run(vg_fixture, tmp_path / "out")
    Path(vg_fixture["regions"]).write_text(json.dumps(original[:3]))
    with pytest.raises(convert.ConvertError, match="ends after 3 images"):
        _run(vg_fixture, tmp_path / "out2")


def test_vg_objects_from_attributes_alone_and_cli(vg_fixture, tmp_path, conv, capsys):
    fx = vg_fixture
    assert vg.main(["--images", str(fx["images"]), "--image-data", fx["image_data"], "--attributes",
                    fx["attributes"], "--include-karpathy-eval", "--out", str(tmp_path / "cli"), "--max-side", "128",
                    "--workers", "2", "--shard-size", "1", "--no-progress"]) == 0
    recs = {s["json"]["image_id"]: s["json"] for s in conv.shard_samples(tmp_path / "cli")}
    assert sorted(recs) == ["vg/1", "vg/5"]
    manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert manifest["skipped"]["no_text"]["examples"] == ["2"]  # the eval image is kept on request, but has no text
    assert recs["vg/1"]["objects"][0] == {"bbox": pytest.approx([96, 48, 12.8, 9.6]), "label": "spoon",
                                          "attributes": ["pink", "metal"]}
    assert "vg: 2 images" in capsys.readouterr().out


def test_vg_resume_after_kill_is_byte_identical(vg_fixture, tmp_path, conv, monkeypatch):
    _run(vg_fixture, tmp_path / "whole", shard_size=1)
    monkeypatch.setenv(convert.FAIL_ENV, "2")
    with pytest.raises(RuntimeError):
        _run(vg_fixture, tmp_path / "killed", shard_size=1, workers=2)
    monkeypatch.delenv(convert.FAIL_ENV)
    _run(vg_fixture, tmp_path / "killed", shard_size=1, workers=2)
    assert conv.tree_bytes(tmp_path / "killed") == conv.tree_bytes(tmp_path / "whole")


def test_vg_truncated_json_is_a_clear_cli_error(vg_fixture, tmp_path, capsys):
    text = open(vg_fixture["regions"]).read()
    open(vg_fixture["regions"], "w").write(text[: len(text) // 2])
    fx = vg_fixture
    with pytest.raises(SystemExit) as exc:
        vg.main(["--images", str(fx["images"]), "--image-data", fx["image_data"], "--regions", fx["regions"],
                 "--include-karpathy-eval", "--out", str(tmp_path / "o"), "--workers", "1", "--no-progress"])
    assert exc.value.code == 2 and "regions.json" in capsys.readouterr().err
