"""Karpathy's dataset_coco.json and the X-VLM release's coco_karpathy_*.json -> caption task files and COCO-format
ground truth (data_prep.coco_caption)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from pycocotools.coco import COCO

from data_prep import coco_caption
from data_prep.convert import ConvertError


def _image(path: Path, size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 30, 200)).save(path, quality=90)
    return path


def _sentences(n: int, prefix: str) -> list[dict]:
    return [{"raw": f"{prefix} caption {i}. ", "tokens": [prefix, "caption", str(i)], "imgid": 0, "sentid": i}
            for i in range(n)]


def _entry(cocoid: int, split: str, folder: str = "val2014", n: int = 5) -> dict:
    return {"filepath": folder, "filename": f"COCO_{folder}_{cocoid:012d}.jpg", "imgid": cocoid, "split": split,
            "sentences": _sentences(n, f"img{cocoid}"), "sentids": list(range(n)), "cocoid": cocoid}


def _write(path: Path, entries: list) -> Path:
    path.write_text(json.dumps({"images": entries, "dataset": "coco"}), encoding="utf-8")
    return path


def _lines(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _counts(manifest: dict, key: str = "skipped") -> dict[str, int]:
    return {k: v["count"] for k, v in manifest[key].items()}


@pytest.fixture
def coco(tmp_path) -> dict:
    root = tmp_path / "coco"
    entries = [_entry(9, "train", "train2014"), _entry(10, "restval"), _entry(11, "val"), _entry(12, "test"),
               _entry(13, "test", n=6)]
    for e in entries:
        _image(root / e["filepath"] / e["filename"])
    return {"root": root, "entries": entries, "file": _write(tmp_path / "dataset_coco.json", entries)}


def test_karpathy_lines_and_ground_truth(coco, tmp_path):
    out = tmp_path / "out"
    manifest = coco_caption.convert_coco_caption(coco["root"], out, karpathy_file=coco["file"], progress=False)
    assert manifest["task"] == "caption" and manifest["source"] == "coco" and manifest["skipped"] == {}
    assert manifest["splits"] == {"train": {"records": 2, "texts": 10}, "val": {"records": 1, "texts": 5},
                                  "test": {"records": 2, "texts": 11}}
    train = _lines(out, "train")
    assert [line["image_id"] for line in train] == ["coco/9", "coco/10"]  # restval goes to train
    assert train[0] == {"image": "train2014/COCO_train2014_000000000009.jpg", "image_id": "coco/9", "width": 64,
                        "height": 48, "captions": [f"img9 caption {i}." for i in range(5)]}
    assert manifest["files"] == ["test_gt.json", "val_gt.json"]
    assert manifest["gt"] == {"val": {"file": "val_gt.json", "images": 1, "annotations": 5},
                              "test": {"file": "test_gt.json", "images": 2, "annotations": 11}}
    raw = json.loads((out / "test_gt.json").read_text())
    assert list(raw) == ["images", "annotations", "type", "info", "licenses"] and raw["type"] == "captions"
    assert raw["images"] == [{"id": 12}, {"id": 13}]
    assert raw["annotations"][0] == {"image_id": 12, "id": 1, "caption": "img12 caption 0."}
    gt = COCO(str(out / "test_gt.json"))
    assert sorted(gt.getImgIds()) == [12, 13] and len(gt.getAnnIds()) == 11
    assert len(gt.getAnnIds(imgIds=[13])) == 6
    assert [a["caption"] for a in gt.loadAnns(gt.getAnnIds(imgIds=[12]))] == [f"img12 caption {i}." for i in range(5)]
    res = gt.loadRes([{"image_id": 12, "caption": "a picture"}, {"image_id": 13, "caption": "another"}])
    assert sorted(res.getImgIds()) == [12, 13]
    val = COCO(str(out / "val_gt.json"))
    assert val.getImgIds() == [11] and len(val.getAnnIds()) == 5
    assert not (out / "train_gt.json").exists()


def test_planted_faults_stay_out_of_lines_and_ground_truth(coco, tmp_path):
    root = coco["root"]
    missing = _entry(20, "test")  # no image file
    broken = _entry(21, "test")
    (root / "val2014" / broken["filename"]).write_bytes(b"not a jpeg")
    some_empty = _entry(22, "test")
    some_empty["sentences"][1]["raw"] = "  "
    some_empty["sentences"][2]["raw"] = 3
    _image(root / "val2014" / some_empty["filename"])
    all_empty = _entry(23, "val")
    for s in all_empty["sentences"]:
        s["raw"] = ""
    _image(root / "val2014" / all_empty["filename"])
    entries = [*coco["entries"], missing, broken, some_empty, all_empty, "junk", {**_entry(24, "val"), "split": 5},
               {**_entry(25, "val"), "sentences": None}, _entry(12, "val")]
    path = _write(tmp_path / "dataset_coco.json", entries)
    out = tmp_path / "out"
    manifest = coco_caption.convert_coco_caption(root, out, karpathy_file=path, progress=False)
    assert _counts(manifest) == {"missing_image": 1, "unreadable_image": 1, "no_text": 1, "bad_record": 2,
                                 "unknown_split": 1, "duplicate_image": 1}
    assert _counts(manifest, "dropped") == {"empty_caption": 6, "bad_caption": 1}
    test_gt = COCO(str(out / "test_gt.json"))
    assert sorted(test_gt.getImgIds()) == [12, 13, 22]
    assert len(test_gt.getAnnIds()) == 5 + 6 + 3
    assert [line["image_id"] for line in _lines(out, "test")] == ["coco/12", "coco/13", "coco/22"]
    assert COCO(str(out / "val_gt.json")).getImgIds() == [11]


def test_xvlm_release_files(coco, tmp_path):
    def img(i, folder="val2014"):
        return f"{folder}/COCO_{folder}_{i:012d}.jpg"

    train = [{"caption": "a dog runs. ", "image": img(9, "train2014"), "image_id": "coco_9"},
             {"caption": "a brown dog", "image": img(9, "train2014"), "image_id": "coco_9"},
             {"caption": "a bird", "image": img(10), "image_id": "coco_10"}]
    val = [{"image": img(11), "caption": [f"val {k}" for k in range(5)]}]
    test = [{"image": img(12), "caption": [f"t12 {k}" for k in range(5)]}, {"image": img(14), "caption": ["x"]},
            {"caption": ["no image"]}]
    files = []
    for name, data in (("coco_karpathy_train.json", train), ("coco_karpathy_val.json", val),
                       ("coco_karpathy_test.json", test)):
        files.append(tmp_path / name)
        files[-1].write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "out"
    manifest = coco_caption.convert_coco_caption(coco["root"], out, xvlm=[str(f) for f in files], progress=False)
    assert manifest["source"] == "coco"
    assert _counts(manifest) == {"missing_image": 1, "bad_record": 1}
    assert manifest["splits"] == {"train": {"records": 2, "texts": 3}, "val": {"records": 1, "texts": 5},
                                  "test": {"records": 1, "texts": 5}}
    assert _lines(out, "train")[0]["captions"] == ["a dog runs.", "a brown dog"]
    gt = COCO(str(out / "test_gt.json"))
    assert gt.getImgIds() == [12] and len(gt.getAnnIds()) == 5


def test_truncated_json_names_the_file(coco, tmp_path):
    text = coco["file"].read_text(encoding="utf-8")
    cut = tmp_path / "dataset_coco.json"
    cut.write_text(text[: len(text) // 2], encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(ConvertError, match="dataset_coco.json.*truncated"):
        coco_caption.convert_coco_caption(coco["root"], out, karpathy_file=cut, progress=False)
    assert not (out / "manifest.json").exists()
    assert not [p for p in out.iterdir() if p.name.endswith((".jsonl", ".tmp", "_gt.json"))]


def test_missing_images_folder_is_an_error_naming_it(coco, tmp_path, capsys):
    wrong = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as exc:
        coco_caption.main(["--karpathy", str(coco["file"]), "--images", str(wrong), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert f"--images {wrong} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_nothing_kept_is_an_error_naming_the_paths_tried(coco, tmp_path):
    empty = tmp_path / "empty_root"
    empty.mkdir()
    out = tmp_path / "out"
    with pytest.raises(ConvertError) as exc:
        coco_caption.convert_coco_caption(empty, out, karpathy_file=coco["file"], progress=False)
    message = str(exc.value)
    assert "no line kept of 5" in message and "missing_image=5" in message and "Check --images" in message
    assert not (out / "manifest.json").exists() and not (out / "test_gt.json").exists()


def test_rerun_identical_other_settings_refused_overwrite_removes_old_files(coco, tmp_path, capsys):
    out = tmp_path / "out"
    coco_caption.convert_coco_caption(coco["root"], out, karpathy_file=coco["file"], workers=1, progress=False)
    first = _tree(out)
    coco_caption.convert_coco_caption(coco["root"], out, karpathy_file=coco["file"], workers=3, progress=False)
    assert _tree(out) == first
    train = tmp_path / "coco_karpathy_train.json"
    train.write_text(json.dumps([{"caption": "a dog", "image": "train2014/COCO_train2014_000000000009.jpg"}]),
                     encoding="utf-8")
    argv = ["--xvlm", str(train), "--images", str(coco["root"]), "--out", str(out), "--no-progress"]
    with pytest.raises(SystemExit) as exc:
        coco_caption.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "--overwrite" in err
    assert _tree(out) == first
    assert coco_caption.main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "train.jsonl"]  # old gt files removed
    assert "files" not in json.loads((out / "manifest.json").read_text())


def test_one_input_kind_only(coco, tmp_path):
    with pytest.raises(ConvertError, match="either --karpathy"):
        coco_caption.convert_coco_caption(coco["root"], tmp_path / "out", progress=False)
