"""NLVR2 official JSON-lines files and the X-VLM release's nlvr_*.json -> nlvr2 task files (data_prep.nlvr2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from data_prep import nlvr2
from data_prep.convert import ConvertError


def _image(path: Path, size=(64, 48), orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    Image.new("RGB", size, (200, 120, 30)).save(path, **kw)
    return path


def _jsonl(path: Path, records: list, raw_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in records]
    for at, text in sorted((raw_lines or {}).items()):
        lines.insert(at, text)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _lines(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _counts(manifest: dict, key: str = "skipped") -> dict[str, int]:
    return {k: v["count"] for k, v in manifest[key].items()}


def _record(identifier: str, label: str = "True", directory: int | None = None, sentence: str = "Two dogs.") -> dict:
    rec = {"identifier": identifier, "sentence": sentence, "label": label, "left_url": "http://x/l.jpg",
           "right_url": "http://x/r.jpg", "synset": "n02084071", "query": "dogs", "extra_validations": {},
           "writer": "w1", "validation": {}}
    if directory is not None:
        rec["directory"] = directory
    return rec


@pytest.fixture
def data(tmp_path) -> dict:
    root = tmp_path / "nlvr2"
    for pair, folder in (("train-10171-0", "train/46"), ("train-10172-1", "train/3"), ("dev-850-0", "dev"),
                         ("test1-0-1", "test1")):
        _image(root / folder / f"{pair}-img0.png", size=(64, 48))
        _image(root / folder / f"{pair}-img1.png", size=(40, 50))
    _image(root / "dev" / "dev-851-2-img0.jpg")  # published images come as .png or .jpg
    _image(root / "dev" / "dev-851-2-img1.png")
    train = [_record("train-10171-0-0", "True", 46), _record("train-10171-0-1", "False", 46, "One dog."),
             _record("train-10172-1-0", "False", 3)]
    dev = [_record("dev-850-0-0", "True"), _record("dev-851-2-1", "False")]
    test1 = [_record("test1-0-1-0", "True")]
    files = {"train": _jsonl(tmp_path / "train.json", train), "dev": _jsonl(tmp_path / "dev.json", dev),
             "test1": _jsonl(tmp_path / "test1.json", test1)}
    return {"root": root, "files": files}


def _argv(files: dict[str, Path]) -> list[str]:
    return [str(p) for p in files.values()]


def test_official_happy_path(data, tmp_path):
    out = tmp_path / "out"
    manifest = nlvr2.convert_nlvr2(_argv(data["files"]), data["root"], out, workers=2, progress=False)
    assert manifest["task"] == "nlvr2" and manifest["skipped"] == {}
    assert manifest["splits"] == {"train": {"records": 3, "texts": 3}, "dev": {"records": 2, "texts": 2},
                                  "test1": {"records": 1, "texts": 1}}
    assert manifest["input_records"] == 6
    train = _lines(out, "train")
    assert train[0] == {"images": ["train/46/train-10171-0-img0.png", "train/46/train-10171-0-img1.png"],
                        "image_id": "nlvr2/train-10171-0", "sizes": [[64, 48], [40, 50]],
                        "identifier": "train-10171-0-0", "sentence": "Two dogs.", "label": True}
    assert train[1]["label"] is False and train[1]["image_id"] == "nlvr2/train-10171-0"  # same pair
    assert train[2]["images"][0] == "train/3/train-10172-1-img0.png"
    dev = _lines(out, "dev")
    assert dev[1]["images"] == ["dev/dev-851-2-img0.jpg", "dev/dev-851-2-img1.png"]
    assert _lines(out, "test1")[0]["images"][1] == "test1/test1-0-1-img1.png"
    assert sorted(p.name for p in out.iterdir()) == ["dev.jsonl", "manifest.json", "test1.jsonl", "train.jsonl"]


def test_planted_faults_are_skipped_and_counted(data, tmp_path):
    root = data["root"]
    _image(root / "train" / "7" / "train-1-0-img0.png")  # img1 missing
    (root / "train" / "46" / "train-2-0-img0.png").write_bytes(b"not a png")
    _image(root / "train" / "46" / "train-2-0-img1.png")
    records = [_record("train-10171-0-0", "True", 46),
               _record("train-10171-0-1", "maybe", 46),             # bad label value
               {**_record("train-10171-0-2", "True", 46), "label": 1},  # wrong type
               {k: v for k, v in _record("train-10171-0-3", "True", 46).items() if k != "label"},
               _record("train-1-0-0", "True", 7),                      # second image missing
               _record("train-2-0-0", "True", 46),                     # unreadable image
               {**_record("train-10171-0-4", "True", 46), "sentence": None},
               _record("train-10171-0-5", "True", 46, sentence="  "),
               {**_record("x", "True", 46)},                           # malformed identifier
               {**_record("train-10171-0-6"), "identifier": 17},
               _record("train-10171-0-0", "False", 46)]                # duplicate identifier
    path = _jsonl(tmp_path / "train.json", records, raw_lines={2: "[1, 2]", 4: "{not json", 6: "42"})
    out = tmp_path / "out"
    manifest = nlvr2.convert_nlvr2([str(path)], root, out, progress=False)
    assert _counts(manifest) == {"bad_label": 3, "bad_record": 6, "no_text": 1, "missing_image": 1,
                                 "unreadable_image": 1, "duplicate_example": 1}
    assert manifest["skipped"]["bad_label"]["examples"] == ["train-10171-0-1", "train-10171-0-2",
                                                            "train-10171-0-3"]
    assert manifest["skipped"]["missing_image"]["examples"] == ["train-1-0-0"]
    assert "image 1: tried" in manifest["skipped_detail"]["missing_image"]
    assert "train.json:5" in manifest["skipped"]["bad_record"]["examples"]
    assert manifest["input_records"] == len(records) + 3
    assert [line["identifier"] for line in _lines(out, "train")] == ["train-10171-0-0"]


def test_truncated_file_names_the_file(data, tmp_path):
    text = data["files"]["train"].read_text(encoding="utf-8")
    cut = tmp_path / "train.json"
    cut.write_text(text[: len(text) - 40], encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(ConvertError, match="train.json.*truncated"):
        nlvr2.convert_nlvr2([str(cut)], data["root"], out, progress=False)
    assert not (out / "manifest.json").exists()
    # a truncated X-VLM array too
    arr = tmp_path / "nlvr_dev.json"
    arr.write_text('[{"images": ["dev/dev-850-0-img0.png", "dev/dev-850-0-img1.png"], "sentence": "a", "la',
                   encoding="utf-8")
    with pytest.raises(ConvertError, match="nlvr_dev.json.*truncated"):
        nlvr2.convert_nlvr2([str(arr)], data["root"], out, progress=False)


def test_xvlm_release_files(data, tmp_path):
    root = data["root"]
    train = [{"images": ["images/train/46/train-10171-0-img0.png", "images/train/46/train-10171-0-img1.png"],
              "sentence": "Two dogs.", "label": "True"},
             {"images": ["train/3/train-10172-1-img0.png", "train/3/train-10172-1-img1.png"],
              "sentence": "A cat.", "label": "False"},
             {"images": ["train/3/train-10172-1-img0.png"], "sentence": "one image", "label": "True"},
             {"images": ["train/3/train-10172-1-img0.png", "train/3/train-10172-1-img1.png"],
              "sentence": "A cat.", "label": "False"}]
    test = [{"images": ["test1/test1-0-1-img0.png", "test1/test1-0-1-img1.png"], "sentence": "x", "label": "True"}]
    files = [tmp_path / "nlvr_train.json", tmp_path / "nlvr_test.json"]
    files[0].write_text(json.dumps(train), encoding="utf-8")
    files[1].write_text(json.dumps(test), encoding="utf-8")
    out = tmp_path / "out"
    manifest = nlvr2.convert_nlvr2([str(f) for f in files], root, out, progress=False)
    assert list(manifest["splits"]) == ["train", "test1"]  # X-VLM's test file is test-P
    assert _counts(manifest) == {"bad_record": 1, "duplicate_example": 1}
    lines = _lines(out, "train")
    assert lines[0] == {"images": ["train/46/train-10171-0-img0.png", "train/46/train-10171-0-img1.png"],
                        "image_id": "nlvr2/train-10171-0", "sizes": [[64, 48], [40, 50]], "identifier": None,
                        "sentence": "Two dogs.", "label": True}
    assert lines[1]["label"] is False and lines[1]["image_id"] == "nlvr2/train-10172-1"
    assert _lines(out, "test1")[0]["image_id"] == "nlvr2/test1-0-1"


def test_train_record_without_directory_is_found_in_the_numbered_folders(data, tmp_path):
    path = _jsonl(tmp_path / "train.json", [_record("train-10172-1-0"), _record("train-999-0-0")])
    out = tmp_path / "out"
    manifest = nlvr2.convert_nlvr2([str(path)], data["root"], out, progress=False)
    assert _lines(out, "train")[0]["images"] == ["train/3/train-10172-1-img0.png", "train/3/train-10172-1-img1.png"]
    assert _counts(manifest) == {"missing_image": 1}


def test_exif_rotated_images_report_upright_sizes(tmp_path):
    root = tmp_path / "nlvr2"
    _image(root / "dev" / "dev-1-0-img0.png", size=(64, 48))
    jpg = root / "dev" / "dev-1-0-img1.jpg"
    _image(jpg, size=(64, 48), orientation=6)
    path = _jsonl(tmp_path / "dev.json", [_record("dev-1-0-0")])
    out = tmp_path / "out"
    nlvr2.convert_nlvr2([f"dev={path}"], root, out, progress=False)
    assert _lines(out, "dev")[0]["sizes"] == [[64, 48], [48, 64]]


def test_missing_images_folder_is_an_error_naming_it(data, tmp_path, capsys):
    wrong = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as exc:
        nlvr2.main(["--split", str(data["files"]["dev"]), "--images", str(wrong), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert f"--images {wrong} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_nothing_kept_is_an_error_naming_the_paths_tried(data, tmp_path):
    empty = tmp_path / "empty_root"
    empty.mkdir()
    out = tmp_path / "out"
    with pytest.raises(ConvertError) as exc:
        nlvr2.convert_nlvr2(_argv(data["files"]), empty, out, progress=False)
    message = str(exc.value)
    assert "no line kept of 6" in message and "missing_image=6" in message
    assert str(empty.resolve()) in message and "Check --images" in message
    assert not (out / "manifest.json").exists()
    assert json.loads((out / "manifest.failed.json").read_text())["skipped"]["missing_image"]["count"] == 6


def test_all_labels_bad_names_the_cause(data, tmp_path):
    path = _jsonl(tmp_path / "dev.json", [_record("dev-850-0-0", "yes"), _record("dev-850-0-1", "no")])
    with pytest.raises(ConvertError, match="bad_label.*True"):
        nlvr2.convert_nlvr2([str(path)], data["root"], tmp_path / "out", progress=False)


def test_rerun_identical_and_other_settings_refused(data, tmp_path, capsys):
    out = tmp_path / "out"
    nlvr2.convert_nlvr2(_argv(data["files"]), data["root"], out, workers=1, progress=False)
    first = _tree(out)
    nlvr2.convert_nlvr2(_argv(data["files"]), data["root"], out, workers=3, progress=False)
    assert _tree(out) == first
    argv = ["--split", str(data["files"]["dev"]), "--images", str(data["root"]), "--out", str(out), "--no-progress"]
    with pytest.raises(SystemExit) as exc:
        nlvr2.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "--overwrite" in err
    assert _tree(out) == first
    assert nlvr2.main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["dev.jsonl", "manifest.json"]
