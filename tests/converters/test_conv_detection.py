"""Objects365 (COCO-style json) and Open Images (box CSVs + class table) converters."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from data_prep import convert, objects365, openimages

KW = {"max_side": 256, "shard_size": 2, "workers": 1, "progress": False}
TV = [150, 100, 200, 150]  # magenta rectangle on rocket (640x427)


@pytest.fixture
def o365(tmp_path, conv) -> dict:
    root = tmp_path / "o365"
    conv.write_photo(root / "images" / "v1" / "patch0" / "objects365_v1_00000001.jpg", "rocket", TV)
    conv.write_photo(root / "train" / "objects365_v2_00000002.jpg", "coffee")
    conv.write_photo(root / "objects365_v2_00000005.jpg", "coffee")
    images = [{"id": 1, "file_name": "images/v1/patch0/objects365_v1_00000001.jpg", "width": 640, "height": 427},
              {"id": 2, "file_name": "images/v2/patch9/objects365_v2_00000002.jpg", "width": 600, "height": 400},
              {"id": 3, "file_name": "images/v2/patch9/objects365_v2_00000003.jpg", "width": 600, "height": 400},
              {"id": 4, "file_name": "images/v2/patch9/objects365_v2_00000004.jpg", "width": 600, "height": 400},
              {"id": 5, "file_name": "images/v2/patch9/objects365_v2_00000005.jpg", "width": 400, "height": 600}]
    anns = [{"id": 1, "image_id": 1, "category_id": 5, "bbox": TV, "area": 30000.0, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 6, "bbox": [-500, 10, 100, 100], "area": 1.0, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 6, "bbox": [10, 10, 100, 0], "area": 0.0, "iscrowd": 0},
            {"id": 4, "image_id": 3, "category_id": 5, "bbox": [10, 10, 20, 20], "area": 400.0, "iscrowd": 1},
            {"id": 5, "image_id": 5, "category_id": 5, "bbox": [10, 10, 20, 20], "area": 400.0, "iscrowd": 0}]
    doc = {"annotations": anns, "images": images, "licenses": [],
           "categories": [{"id": 5, "name": "Television"}, {"id": 6, "name": "Cup"}]}
    path = tmp_path / "zhiyuan_objv2_train.json"
    path.write_text(json.dumps(doc))
    return {"annotations": [str(path)], "images": root}


def test_objects365_boxes_and_skips(o365, tmp_path, conv):
    manifest = objects365.convert_objects365(o365["annotations"], o365["images"], tmp_path / "out", **KW)
    (sample,) = conv.shard_samples(tmp_path / "out")
    rec = sample["json"]
    assert rec["image_id"] == "objects365/1" and [o["label"] for o in rec["objects"]] == ["Television"]
    conv.assert_box_on_colour(sample, rec["objects"][0]["bbox"])
    assert conv.skipped(manifest) == {"no_annotations": 1, "missing_image": 1, "bbox_empty": 1, "size_mismatch": 1}
    assert conv.dropped(manifest) == {"bbox_outside_image": 1, "bbox_empty": 1}


def _csv(path: Path, rows: list[list], header: list[str] | None) -> Path:
    with open(path, "w", newline="") as fp:
        w = csv.writer(fp)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


HEADER = ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax", "IsOccluded",
          "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside"]


def _row(image_id: str, label: str, box: tuple[float, float, float, float], conf: str = "1") -> list:
    return [image_id, "xclick", label, conf, *box, 0, 0, 0, 0, 0]


@pytest.fixture
def oi(tmp_path, conv) -> dict:
    root = tmp_path / "oi"
    conv.write_photo(root / "train" / "000a1249af2bc5f0.jpg", "coffee", [120, 100, 240, 160])
    conv.write_photo(root / "0b6f2e3c1a2d4e5f.jpg", "astronaut")
    rows = [_row("000a1249af2bc5f0", "/m/02p5f1q", (0.2, 0.6, 0.25, 0.65)),
            _row("000a1249af2bc5f0", "/m/04dr76w", (0.5, 0.5, 0.1, 0.3)),
            _row("000a1249af2bc5f0", "/m/0unknown", (0.1, 0.2, 0.1, 0.2)),
            _row("000a1249af2bc5f0", "/m/04dr76w", (0.1, 0.2, 0.1, 0.2), "0"),
            _row("0b6f2e3c1a2d4e5f", "/m/01g317", (1.2, 1.5, 0.0, 0.5)),
            _row("0c0c0c0c0c0c0c0c", "/m/01g317", (0.1, 0.9, 0.1, 0.9))]
    boxes = _csv(tmp_path / "oidv6-train-annotations-bbox.csv", rows, HEADER)
    classes = _csv(tmp_path / "class-descriptions-boxable.csv",
                   [["/m/02p5f1q", "Coffee cup"], ["/m/04dr76w", "Bottle"], ["/m/01g317", "Person"]], None)
    return {"boxes": [str(boxes)], "classes": str(classes), "images": root, "rows": rows}


def test_openimages_normalised_boxes_on_the_pixels(oi, tmp_path, conv):
    manifest = openimages.convert_openimages(oi["boxes"], oi["classes"], oi["images"], tmp_path / "out", **KW)
    (sample,) = conv.shard_samples(tmp_path / "out")
    rec = sample["json"]
    assert rec["image_id"] == "openimages/000a1249af2bc5f0" and [o["label"] for o in rec["objects"]] == ["Coffee cup"]
    assert rec["objects"][0]["bbox"] == pytest.approx([51.2, 42.75, 102.4, 68.4], abs=0.01)
    conv.assert_box_on_colour(sample, rec["objects"][0]["bbox"])
    assert conv.skipped(manifest) == {"bbox_outside_image": 1, "missing_image": 1}
    assert conv.dropped(manifest) == {"bbox_empty": 1, "bbox_outside_image": 1, "negative_label": 1,
                                      "unknown_label": 1}


def test_openimages_class_table_with_header_and_unsorted_error(oi, tmp_path):
    classes = _csv(tmp_path / "oidv7-class-descriptions-boxable.csv", [["/m/02p5f1q", "Coffee cup"]],
                   ["LabelName", "DisplayName"])
    assert openimages.read_classes(classes) == {"/m/02p5f1q": "Coffee cup"}
    rows = oi["rows"]
    unsorted = _csv(tmp_path / "unsorted.csv", [rows[0], rows[4], rows[1]], HEADER)
    with pytest.raises(convert.ConvertError, match="sorted by ImageID"):
        openimages.convert_openimages([str(unsorted)], oi["classes"], oi["images"], tmp_path / "o2", **KW)
    bad = _csv(tmp_path / "bad.csv", [["x"]], ["ImageID", "LabelName"])
    with pytest.raises(convert.ConvertError, match="missing columns"):
        openimages.convert_openimages([str(bad)], oi["classes"], oi["images"], tmp_path / "o3", **KW)


def test_detection_clis_help(capsys):
    for module, flag in ((objects365, "--annotations"), (openimages, "--classes")):
        with pytest.raises(SystemExit) as exc:
            module.main(["--help"])
        assert exc.value.code == 0 and flag in capsys.readouterr().out


def test_objects365_release_layout_prefix_stripped(tmp_path, conv):
    """The annotations say ``images/v1/patch0/x.jpg`` / ``images/v2/patch16/y.jpg`` while the released archives
    unpack to ``train/patch0/x.jpg`` / ``val/patch16/y.jpg``: every image is found."""
    root = tmp_path / "objects365"
    for rel in ("train/patch0/objects365_v1_00000001.jpg", "train/patch0/objects365_v1_00000002.jpg",
                "val/patch16/objects365_v2_00908726.jpg"):
        conv.write_photo(root / rel, "coffee", size=(64, 48))
    names = {1: "images/v1/patch0/objects365_v1_00000001.jpg", 2: "images/v1/patch0/objects365_v1_00000002.jpg",
             3: "images/v2/patch16/objects365_v2_00908726.jpg"}
    doc = {"images": [{"id": i, "file_name": n, "width": 64, "height": 48} for i, n in names.items()],
           "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [8, 8, 20, 16], "area": 320.0,
                            "iscrowd": 0} for i in names],
           "categories": [{"id": 1, "name": "Cup"}]}
    ann = tmp_path / "zhiyuan_objv2_train.json"
    ann.write_text(json.dumps(doc))
    manifest = objects365.convert_objects365([str(ann)], root, tmp_path / "out", **KW)
    assert manifest["skipped"] == {} and manifest["counts"]["images"] == 3
    recs = [s["json"] for s in conv.shard_samples(tmp_path / "out")]
    assert [r["image_id"] for r in recs] == ["objects365/1", "objects365/2", "objects365/3"]
    assert all(r["objects"][0]["label"] == "Cup" for r in recs)
