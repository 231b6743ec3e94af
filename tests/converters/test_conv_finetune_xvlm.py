"""The X-VLM release's fine-tuning JSON files -> retrieval / grounding task files (data_prep.xvlm_finetune)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from PIL import Image

from data_prep import xvlm_finetune
from data_prep.convert import ConvertError


def _image(path: Path, size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 200, 30)).save(path, quality=90)
    return path


def _json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _lines(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _counts(manifest: dict, key: str = "skipped") -> dict[str, int]:
    return {k: v["count"] for k, v in manifest[key].items()}


def _coco(i: int, folder: str = "val2014") -> str:
    return f"{folder}/COCO_{folder}_{i:012d}.jpg"


@pytest.fixture
def coco(tmp_path) -> dict:
    root = tmp_path / "coco"
    for i in (1, 2, 3, 4, 5):
        _image(root / _coco(i))
    _image(root / _coco(6, "train2014"))
    train = [{"image": _coco(1), "caption": "a dog. ", "image_id": 1},
             {"image": _coco(6, "train2014"), "caption": "a cat", "image_id": 6},
             {"image": _coco(1), "caption": "a brown dog", "image_id": 1},
             {"image": _coco(2), "caption": "a bird", "image_id": 2},
             {"image": _coco(6, "train2014"), "caption": "the cat sleeps", "image_id": 6}]
    val = [{"image": _coco(3), "caption": [f"val caption {k}" for k in range(5)]}]
    test = [{"image": _coco(i), "caption": [f"test {i} caption {k}" for k in range(5)]} for i in (4, 5)]
    files = {"train": _json(tmp_path / "coco_train.json", train), "val": _json(tmp_path / "coco_val.json", val),
             "test": _json(tmp_path / "coco_test.json", test)}
    return {"root": root, "files": files}


def _splits(files: dict[str, Path]) -> list[str]:
    return [f"{name}={path}" for name, path in files.items()]


def test_retrieval_happy_path(coco, tmp_path):
    out = tmp_path / "out"
    manifest = xvlm_finetune.convert_xvlm_finetune("retrieval", _splits(coco["files"]), coco["root"], out,
                                                   progress=False)
    assert manifest["source"] == "coco" and manifest["task"] == "retrieval"
    assert manifest["splits"] == {"train": {"records": 3, "texts": 5}, "val": {"records": 1, "texts": 5},
                                  "test": {"records": 2, "texts": 10}}
    assert manifest["input_records"] == 8 and manifest["skipped"] == {}
    train = _lines(out, "train")
    assert [(line["image_id"], line["captions"]) for line in train] == [
        ("coco/1", ["a dog.", "a brown dog"]), ("coco/6", ["a cat", "the cat sleeps"]), ("coco/2", ["a bird"])]
    assert train[1]["image"] == _coco(6, "train2014") and (train[1]["width"], train[1]["height"]) == (64, 48)
    test = _lines(out, "test")
    assert [line["image_id"] for line in test] == ["coco/4", "coco/5"]  # ids from the file names
    assert all(len(line["captions"]) == 5 for line in test)
    ids = [line["image_id"] for s in ("train", "val", "test") for line in _lines(out, s)]
    assert len(ids) == len(set(ids))


def test_retrieval_faults(coco, tmp_path):
    root = coco["root"]
    train = [{"image": _coco(1), "caption": "a dog", "image_id": 1},
             "junk", 17,
             {"caption": "no image"},
             {"image": _coco(2)},  # no caption key
             {"image": 5, "caption": "image is a number"},
             {"image": _coco(2), "caption": ""},
             {"image": _coco(2), "caption": 3.5},  # wrong type
             {"image": _coco(9), "caption": "no such file", "image_id": 9},
             {"image": _coco(1), "caption": "   "}]
    test = [{"image": _coco(4), "caption": ["x", "", "y", None, "z"]}, {"image": _coco(1), "caption": ["dup"]}]
    files = {"train": _json(tmp_path / "coco_train.json", train), "test": _json(tmp_path / "coco_test.json", test)}
    out = tmp_path / "out"
    manifest = xvlm_finetune.convert_xvlm_finetune("retrieval", _splits(files), root, out, progress=False)
    assert _counts(manifest) == {"bad_record": 5, "no_text": 1, "missing_image": 1, "duplicate_image": 1}
    assert manifest["skipped"]["bad_record"]["examples"][:2] == ["coco_train.json[1]", "coco_train.json[2]"]
    assert manifest["skipped"]["no_text"]["examples"] == ["coco/2"]
    assert manifest["skipped"]["duplicate_image"]["examples"] == ["coco/1"]
    assert _counts(manifest, "dropped") == {"empty_caption": 3, "bad_caption": 2}
    assert [(line["image_id"], line["captions"]) for line in _lines(out, "train")] == [("coco/1", ["a dog"])]
    assert _lines(out, "test")[0]["captions"] == ["x", "y", "z"]


def test_flickr_ids_from_file_names(tmp_path):
    root = tmp_path / "images"
    _image(root / "flickr30k-images" / "1000092795.jpg")
    _image(root / "flickr30k-images" / "1007129816.jpg")
    train = [{"image": "flickr30k-images/1000092795.jpg", "caption": "two men", "image_id": 0}]
    test = [{"image": "flickr30k-images/1007129816.jpg", "caption": ["a man"] * 5}]
    files = {"train": _json(tmp_path / "flickr30k_train.json", train),
             "test": _json(tmp_path / "flickr30k_test.json", test)}
    out = tmp_path / "out"
    manifest = xvlm_finetune.convert_xvlm_finetune("retrieval", _splits(files), root, out, progress=False)
    assert manifest["source"] == "flickr30k"
    assert _lines(out, "train")[0]["image_id"] == "flickr30k/1000092795"
    assert _lines(out, "test")[0]["image_id"] == "flickr30k/1007129816"


def test_truncated_and_wrong_layout_files_name_the_file(coco, tmp_path):
    text = coco["files"]["train"].read_text()
    cut = _json(tmp_path / "coco_train_cut.json", None)
    cut.write_text(text[:-40])
    out = tmp_path / "out"
    with pytest.raises(ConvertError, match=r"coco_train_cut\.json is not complete, valid JSON.*truncated"):
        xvlm_finetune.convert_xvlm_finetune("retrieval", [f"train={cut}"], coco["root"], out, progress=False)
    assert not (out / "manifest.json").exists() and not list(out.glob("*.jsonl"))
    obj = _json(tmp_path / "coco_obj.json", {"annotations": []})
    with pytest.raises(ConvertError, match=r"coco_obj\.json does not have the expected layout"):
        xvlm_finetune.convert_xvlm_finetune("retrieval", [f"train={obj}"], coco["root"], out, progress=False)


def test_cli_errors_and_refused_rerun(coco, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--task", "retrieval", *[a for s in _splits(coco["files"]) for a in ("--split", s)], "--no-progress"]
    with pytest.raises(SystemExit) as exc:
        xvlm_finetune.main([*base, "--images", str(tmp_path / "missing"), "--out", str(out)])
    assert exc.value.code == 2 and f"--images {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        xvlm_finetune.main([*base, "--images", str(coco["root"]), "--out", str(out), "--split", "bad"])
    assert "expected NAME=FILE" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit):
        xvlm_finetune.main([*base, "--images", str(empty), "--out", str(out)])
    err = capsys.readouterr().err
    assert "no line kept of 8" in err and "missing_image=6" in err and str(empty.resolve()) in err
    assert xvlm_finetune.main([*base, "--images", str(coco["root"]), "--out", str(out)]) == 0
    before = _tree(out)
    with pytest.raises(SystemExit):  # only train: other settings
        xvlm_finetune.main(["--task", "retrieval", "--split", f"train={coco['files']['train']}",
                            "--images", str(coco["root"]), "--out", str(out), "--no-progress"])
    assert "other settings" in capsys.readouterr().err
    assert _tree(out) == before
    assert xvlm_finetune.main(["--task", "retrieval", "--split", f"train={coco['files']['train']}", "--images",
                               str(coco["root"]), "--out", str(out), "--no-progress", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "train.jsonl"]  # old val/test removed


# ----------------------------------------------------------------------------------------------- grounding
@pytest.fixture
def grounding(tmp_path) -> dict:
    root = tmp_path / "coco"
    for i in (1, 2, 3):
        _image(root / "train2014" / f"COCO_train2014_{i:012d}.jpg")

    def entry(i, text, ref_id):
        return {"image": f"coco/train2014/COCO_train2014_{i:012d}.jpg", "text": text, "ref_id": ref_id}

    refs = [{"ref_id": r, "ann_id": a, "image_id": i, "split": s, "sentences": [{"sent": "x", "raw": "x"}]}
            for r, a, i, s in ((10, 100, 1, "train"), (20, 200, 2, "testA"), (30, 300, 3, "testB"))]
    refs_path = tmp_path / "refs(unc).p"
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    inst = _json(tmp_path / "instances.json", {
        "images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "width": 64, "height": 48}
                   for i in (1, 2, 3)],
        "annotations": [{"id": a, "image_id": i, "bbox": [2, 2, 10, 10]} for a, i in ((100, 1), (200, 2), (300, 3))]})
    files = {"train": _json(tmp_path / "refcoco+_train.json",
                            [entry(1, "left dog", 10), entry(1, "brown dog", 10), {"text": "x"}]),
             "test": _json(tmp_path / "refcoco+_test.json",
                           [entry(2, "man", 20), entry(3, "table", 30), entry(3, "", 30), entry(3, "x", 99)])}
    return {"root": root, "files": files, "refs": refs_path, "instances": inst}


def test_grounding_with_refs(grounding, tmp_path):
    out = tmp_path / "out"
    manifest = xvlm_finetune.convert_xvlm_finetune(
        "grounding", _splits(grounding["files"]), grounding["root"], out, refs=grounding["refs"],
        instances=grounding["instances"], progress=False)
    assert manifest["source"] == "refcoco+"
    assert manifest["splits"] == {"train": {"records": 1, "texts": 2}, "testA": {"records": 1, "texts": 1},
                                  "testB": {"records": 1, "texts": 1}}
    assert _counts(manifest) == {"bad_record": 1, "unknown_ref": 1}
    assert _counts(manifest, "dropped") == {"empty_caption": 1}
    assert _lines(out, "train") == [{"image": "train2014/COCO_train2014_000000000001.jpg", "image_id": "coco/1",
                                     "width": 64, "height": 48, "ref_id": 10, "texts": ["left dog", "brown dog"],
                                     "bbox": [2.0, 2.0, 10.0, 10.0]}]
    assert [line["ref_id"] for line in _lines(out, "testB")] == [30]


def test_grounding_without_boxes_is_an_error_that_says_to_pass_refs(grounding, tmp_path):
    with pytest.raises(ConvertError, match="no_box.*--refs"):
        xvlm_finetune.convert_xvlm_finetune("grounding", _splits(grounding["files"]), grounding["root"],
                                            tmp_path / "out", progress=False)


def test_grounding_entries_with_their_own_boxes(grounding, tmp_path):
    entries = [{"image": "train2014/COCO_train2014_000000000001.jpg", "text": "dog", "ref_id": 5,
                "bbox": [58, 40, 8, 10], "width": 64, "height": 48},
               {"image": "train2014/COCO_train2014_000000000002.jpg", "text": "cat", "ref_id": 6,
                "bbox": [1, 1, 0, 5], "width": 64, "height": 48},
               {"image": "train2014/COCO_train2014_000000000003.jpg", "text": "cup", "ref_id": 7,
                "bbox": [70, 60, 5, 5]}]
    path = _json(tmp_path / "vlue_test.json", entries)
    out = tmp_path / "out"
    manifest = xvlm_finetune.convert_xvlm_finetune("grounding", [f"test={path}"], grounding["root"], out,
                                                   progress=False)
    assert _counts(manifest) == {"bbox_empty": 1, "bbox_outside_image": 1}
    assert _lines(out, "test")[0]["bbox"] == [58.0, 40.0, 6.0, 8.0]
    assert manifest["adjusted"] == {"bbox_clipped": 1}
