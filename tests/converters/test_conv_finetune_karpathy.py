"""Karpathy split files (dataset_coco.json, dataset_flickr30k.json) -> retrieval task files (data_prep.karpathy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from data_prep import karpathy
from data_prep.convert import ConvertError


def _image(path: Path, size=(64, 48), orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    Image.new("RGB", size, (200, 30, 30)).save(path, quality=90, **kw)
    return path


def _sentences(n: int, prefix: str) -> list[dict]:
    return [{"raw": f" {prefix} caption {i}. ", "tokens": [prefix, "caption", str(i)], "imgid": 0, "sentid": i}
            for i in range(n)]


def _coco_entry(cocoid: int, split: str, folder: str = "val2014", n: int = 5) -> dict:
    return {"filepath": folder, "filename": f"COCO_{folder}_{cocoid:012d}.jpg", "imgid": cocoid, "split": split,
            "sentences": _sentences(n, f"img{cocoid}"), "sentids": list(range(n)), "cocoid": cocoid}


def _write(path: Path, entries: list, dataset: str = "coco") -> Path:
    path.write_text(json.dumps({"images": entries, "dataset": dataset}), encoding="utf-8")
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
    entries = [_coco_entry(9, "train", "train2014"), _coco_entry(10, "restval"), _coco_entry(11, "val"),
               _coco_entry(12, "test"), _coco_entry(13, "test")]
    for e in entries:
        _image(root / e["filepath"] / e["filename"])
    return {"root": root, "entries": entries, "file": _write(tmp_path / "dataset_coco.json", entries)}


def test_coco_happy_path(coco, tmp_path):
    out = tmp_path / "out"
    manifest = karpathy.convert_karpathy(coco["file"], coco["root"], out, workers=2, progress=False)
    assert manifest["task"] == "retrieval" and manifest["source"] == "coco"
    assert manifest["splits"] == {"train": {"records": 2, "texts": 10}, "val": {"records": 1, "texts": 5},
                                  "test": {"records": 2, "texts": 10}}
    assert manifest["skipped"] == {} and manifest["input_records"] == 5
    assert manifest["image_root"] == str(coco["root"].resolve())
    train, val, test = (_lines(out, s) for s in ("train", "val", "test"))
    assert [line["image_id"] for line in train] == ["coco/9", "coco/10"]  # restval goes to train
    assert train[0] == {"image": "train2014/COCO_train2014_000000000009.jpg", "image_id": "coco/9", "width": 64,
                        "height": 48, "captions": [f"img9 caption {i}." for i in range(5)]}
    assert [line["image_id"] for line in val] == ["coco/11"]
    assert all(len(line["captions"]) == 5 for line in test)
    ids = [line["image_id"] for s in (train, val, test) for line in s]
    assert len(ids) == len(set(ids))
    for line in train + val + test:
        assert (coco["root"] / line["image"]).is_file()
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.jsonl", "train.jsonl", "val.jsonl"]


def test_same_settings_rerun_is_byte_identical(coco, tmp_path):
    out = tmp_path / "out"
    karpathy.convert_karpathy(coco["file"], coco["root"], out, workers=1, progress=False)
    first = _tree(out)
    karpathy.convert_karpathy(coco["file"], coco["root"], out, workers=3, progress=False)
    assert _tree(out) == first


def test_planted_faults_are_skipped_and_counted(coco, tmp_path):
    root = coco["root"]
    good = _coco_entry(20, "train")
    _image(root / "val2014" / good["filename"])
    empty_one = _coco_entry(21, "test")
    empty_one["sentences"][2]["raw"] = "   "
    empty_one["sentences"][3]["raw"] = 7  # wrong type
    _image(root / "val2014" / empty_one["filename"])
    all_empty = _coco_entry(22, "train")
    for s in all_empty["sentences"]:
        s["raw"] = ""
    _image(root / "val2014" / all_empty["filename"])
    missing = _coco_entry(23, "val")  # no image file
    broken = _coco_entry(24, "train")
    (root / "val2014" / broken["filename"]).write_bytes(b"not a jpeg at all")
    bad_split = _coco_entry(25, "holdout")
    _image(root / "val2014" / bad_split["filename"])
    bad_sentences = {**_coco_entry(26, "train"), "sentences": "a caption"}
    bad_name = {**_coco_entry(27, "train"), "filename": 42}
    duplicate = _coco_entry(20, "test")
    entries = [good, "oops", None, empty_one, all_empty, missing, broken, bad_split, bad_sentences, bad_name,
               duplicate]
    path = _write(tmp_path / "dataset_coco.json", entries)
    out = tmp_path / "out"
    manifest = karpathy.convert_karpathy(path, root, out, progress=False)
    assert _counts(manifest) == {"bad_record": 4, "no_text": 1, "missing_image": 1, "unreadable_image": 1,
                                 "unknown_split": 1, "duplicate_image": 1}
    assert manifest["skipped"]["missing_image"]["examples"] == ["coco/23"]
    assert manifest["skipped"]["duplicate_image"]["examples"] == ["coco/20"]
    assert "tried" in manifest["skipped_detail"]["missing_image"]
    assert _counts(manifest, "dropped") == {"empty_caption": 6, "bad_caption": 1}
    assert manifest["input_records"] == len(entries)
    assert [line["image_id"] for line in _lines(out, "train")] == ["coco/20"]
    test = _lines(out, "test")
    assert test[0]["captions"] == ["img21 caption 0.", "img21 caption 1.", "img21 caption 4."]
    assert _lines(out, "val") == []
    assert manifest["splits"]["val"] == {"records": 0, "texts": 0}


def test_exif_rotated_image_reports_upright_size(tmp_path):
    root = tmp_path / "coco"
    entry = _coco_entry(5, "test")
    _image(root / "val2014" / entry["filename"], size=(64, 48), orientation=6)
    out = tmp_path / "out"
    karpathy.convert_karpathy(_write(tmp_path / "dataset_coco.json", [entry]), root, out, progress=False)
    line = _lines(out, "test")[0]
    assert (line["width"], line["height"]) == (48, 64)


def test_flickr_layout(tmp_path):
    root = tmp_path / "flickr"
    entries = []
    for i, (name, split) in enumerate([("1000092795.jpg", "train"), ("10002456.jpg", "val"),
                                       ("1000268201.jpg", "test")]):
        _image(root / "flickr30k-images" / name)
        entries.append({"filename": name, "imgid": i, "split": split, "sentences": _sentences(5, name[:4]),
                        "sentids": list(range(5))})
    path = _write(tmp_path / "dataset_flickr30k.json", entries, dataset="flickr30k")
    out = tmp_path / "out"
    manifest = karpathy.convert_karpathy(path, root, out, progress=False)
    assert manifest["source"] == "flickr30k"
    line = _lines(out, "train")[0]
    assert line["image_id"] == "flickr30k/1000092795"
    assert line["image"] == "flickr30k-images/1000092795.jpg"
    assert _lines(out, "test")[0]["image_id"] == "flickr30k/1000268201"
    # the image folder itself as --images works too
    out2 = tmp_path / "out2"
    karpathy.convert_karpathy(path, root / "flickr30k-images", out2, progress=False)
    assert _lines(out2, "train")[0]["image"] == "1000092795.jpg"


def test_source_from_entries_when_the_name_says_nothing(coco, tmp_path):
    path = _write(tmp_path / "splits.json", coco["entries"])
    manifest = karpathy.convert_karpathy(path, coco["root"], tmp_path / "out", progress=False)
    assert manifest["source"] == "coco"


def test_truncated_json_names_the_file_and_leaves_no_output(coco, tmp_path):
    text = coco["file"].read_text(encoding="utf-8")
    cut = tmp_path / "dataset_coco.json"
    cut.write_text(text[: len(text) * 2 // 3], encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(ConvertError, match="dataset_coco.json.*truncated"):
        karpathy.convert_karpathy(cut, coco["root"], out, progress=False)
    assert not (out / "manifest.json").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".jsonl") or p.name.endswith(".tmp")]


def test_not_a_karpathy_file(tmp_path, coco):
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"annotations": []}), encoding="utf-8")
    with pytest.raises(ConvertError, match="no 'images' array"):
        karpathy.convert_karpathy(path, coco["root"], tmp_path / "out", progress=False)


def test_missing_images_folder_is_an_error_naming_it(coco, tmp_path, capsys):
    wrong = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as exc:
        karpathy.main(["--karpathy", str(coco["file"]), "--images", str(wrong), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert f"--images {wrong} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_nothing_kept_is_an_error_naming_the_paths_tried(coco, tmp_path):
    empty = tmp_path / "empty_root"
    empty.mkdir()
    out = tmp_path / "out"
    with pytest.raises(ConvertError) as exc:
        karpathy.convert_karpathy(coco["file"], empty, out, progress=False)
    message = str(exc.value)
    assert "no line kept of 5" in message and "missing_image=5" in message
    assert str(empty.resolve()) in message and "tried" in message and "Check --images" in message
    assert not (out / "manifest.json").exists()
    failed = json.loads((out / "manifest.failed.json").read_text())
    assert failed["skipped"]["missing_image"]["count"] == 5


def test_other_settings_are_refused_without_touching_the_output(coco, tmp_path, capsys):
    out = tmp_path / "out"
    assert karpathy.main(["--karpathy", str(coco["file"]), "--images", str(coco["root"]), "--out", str(out),
                          "--no-progress"]) == 0
    before = _tree(out)
    other = _write(tmp_path / "dataset_coco_v2.json", coco["entries"][:2])
    with pytest.raises(SystemExit) as exc:
        karpathy.main(["--karpathy", str(other), "--images", str(coco["root"]), "--out", str(out), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "--overwrite" in err
    assert _tree(out) == before
    assert karpathy.main(["--karpathy", str(other), "--images", str(coco["root"]), "--out", str(out),
                          "--no-progress", "--overwrite"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["args"] == {"karpathy": "dataset_coco_v2.json"}
    assert manifest["splits"]["train"]["records"] == 2 and manifest["splits"]["test"]["records"] == 0


def test_empty_input_is_an_error(coco, tmp_path):
    path = _write(tmp_path / "dataset_coco.json", [])
    out = tmp_path / "out"
    with pytest.raises(ConvertError, match="holds no records"):
        karpathy.convert_karpathy(path, coco["root"], out, progress=False)
    assert not (out / "manifest.json").exists()
