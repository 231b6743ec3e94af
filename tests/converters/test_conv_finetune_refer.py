"""REFER toolkit files (refs(unc).p + instances.json) -> grounding task files (data_prep.refer), and its restricted
unpickler."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import pytest
from PIL import Image

from data_prep import refer
from data_prep.convert import ConvertError


def _image(path: Path, size=(64, 48), orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    Image.new("RGB", size, (30, 30, 200)).save(path, quality=90, **kw)
    return path


def py2_pickle(obj) -> bytes:
    """A protocol-2 pickle as Python 2's cPickle writes it: ``str`` values as byte strings (SHORT_BINSTRING)."""
    out = bytearray(b"\x80\x02")

    def emit(o):
        nonlocal out
        if o is None:
            out += b"N"
        elif isinstance(o, bool):
            out += b"\x88" if o else b"\x89"
        elif isinstance(o, int):
            out += b"J" + struct.pack("<i", o)
        elif isinstance(o, float):
            out += b"G" + struct.pack(">d", o)
        elif isinstance(o, str):
            data = o.encode("utf-8")
            out += (b"U" + bytes([len(data)]) if len(data) < 256 else b"T" + struct.pack("<I", len(data))) + data
        elif isinstance(o, list):
            out += b"]("
            for v in o:
                emit(v)
            out += b"e"
        elif isinstance(o, dict):
            out += b"}("
            for k, v in o.items():
                emit(k)
                emit(v)
            out += b"u"
        else:
            raise TypeError(o)

    emit(obj)
    return bytes(out + b".")


def _name(image_id: int) -> str:
    return f"COCO_train2014_{image_id:012d}.jpg"


def _ref(ref_id: int, image_id: int, ann_id: int, split: str, sents=("the red one", "left cup")) -> dict:
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split, "category_id": 1,
            "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg", "sent_ids": list(range(len(sents))),
            "sentences": [{"sent": s, "raw": s.upper(), "tokens": s.split(), "sent_id": i}
                          for i, s in enumerate(sents)]}


def _instances(path: Path, images: dict[int, tuple[int, int]], anns: dict[int, tuple[int, list]]) -> Path:
    data = {"info": {}, "images": [{"id": i, "file_name": _name(i), "width": w, "height": h}
                                   for i, (w, h) in images.items()],
            "annotations": [{"id": a, "image_id": i, "bbox": box, "category_id": 1, "area": 1, "iscrowd": 0,
                             "segmentation": [[0, 0, 1, 1]]} for a, (i, box) in anns.items()],
            "categories": [{"id": 1, "name": "cup"}]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _lines(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _counts(manifest: dict, key: str = "skipped") -> dict[str, int]:
    return {k: v["count"] for k, v in manifest[key].items()}


@pytest.fixture
def refcoco(tmp_path) -> dict:
    root = tmp_path / "coco"
    for i in (1, 2, 3, 4):
        _image(root / "train2014" / _name(i))
    refs = [_ref(10, 1, 100, "train"), _ref(11, 1, 101, "train", ("man in café",)), _ref(12, 2, 200, "val"),
            _ref(13, 3, 300, "testA"), _ref(14, 4, 400, "testB")]
    anns = {100: (1, [4, 6, 20, 10]), 101: (1, [30.5, 10.25, 12, 30]), 200: (2, [0, 0, 64, 48]),
            300: (3, [10, 10, 5, 5]), 400: (4, [1, 2, 3, 4])}
    refs_path = tmp_path / "refs(unc).p"
    refs_path.write_bytes(py2_pickle(refs))
    inst = _instances(tmp_path / "instances.json", {i: (64, 48) for i in (1, 2, 3, 4)}, anns)
    return {"root": root, "refs": refs, "refs_path": refs_path, "instances": inst, "anns": anns}


def test_happy_path(refcoco, tmp_path):
    out = tmp_path / "out"
    manifest = refer.convert_refer(refcoco["refs_path"], refcoco["instances"], refcoco["root"], out, progress=False)
    assert manifest["task"] == "grounding" and manifest["source"] == "refcoco+"
    assert manifest["splits"] == {"train": {"records": 2, "texts": 3}, "val": {"records": 1, "texts": 2},
                                  "testA": {"records": 1, "texts": 2}, "testB": {"records": 1, "texts": 2}}
    assert manifest["skipped"] == {} and manifest["input_records"] == 5
    train = _lines(out, "train")
    assert train[0] == {"image": f"train2014/{_name(1)}", "image_id": "coco/1", "width": 64, "height": 48,
                        "ref_id": 10, "texts": ["the red one", "left cup"], "bbox": [4.0, 6.0, 20.0, 10.0]}
    assert train[1]["texts"] == ["man in café"]  # a Python 2 byte string decoded as UTF-8
    assert train[1]["bbox"] == [30.5, 10.25, 12.0, 30.0]
    assert _lines(out, "testA")[0]["ref_id"] == 13 and _lines(out, "testB")[0]["ref_id"] == 14
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "testA.jsonl", "testB.jsonl", "train.jsonl",
                                                     "val.jsonl"]
    # the same run again writes the same bytes
    before = _tree(out)
    refer.convert_refer(refcoco["refs_path"], refcoco["instances"], refcoco["root"], out, progress=False)
    assert _tree(out) == before


def test_python3_pickle_and_sent_fallback(refcoco, tmp_path):
    refs = [_ref(10, 1, 100, "train")]
    refs[0]["sentences"][0]["sent"] = ""  # falls back to raw
    path = tmp_path / "refs3.p"
    path.write_bytes(pickle.dumps(refs, protocol=4))
    out = tmp_path / "out"
    refer.convert_refer(path, refcoco["instances"], refcoco["root"], out, progress=False)
    assert _lines(out, "train")[0]["texts"] == ["THE RED ONE", "left cup"]


def test_planted_faults(refcoco, tmp_path):
    root = refcoco["root"]
    for i in (5, 6, 7, 8, 9):
        _image(root / "train2014" / _name(i))
    (root / "train2014" / _name(9)).write_bytes(b"\xff\xd8 broken")
    refs = [
        _ref(10, 1, 100, "train"),
        _ref(20, 5, 500, "train"),  # zero-area box
        _ref(21, 6, 600, "train"),  # box outside the image
        _ref(22, 7, 700, "val"),  # box poking out: clipped, kept
        _ref(23, 8, 800, "train", ("", "  ")),  # no text
        {**_ref(24, 8, 801, "train", ("ok", "")), "sentences": [  # one empty text, two of wrong types dropped
            {"sent": "ok"}, {"sent": "", "raw": ""}, {"sent": ["a list"]}, "not a sentence"]},
        _ref(25, 1, 999, "train"),  # ann id not in instances
        _ref(26, 11, 1100, "train"),  # image file missing
        _ref(27, 9, 900, "train"),  # unreadable image
        _ref(28, 1, 100, "holdout"),  # unknown split
        "not a ref",
        {**_ref(29, 1, 100, "train"), "ref_id": None},
        {**_ref(30, 1, 100, "train"), "sentences": "a string"},
        {**_ref(31, 1, 100, "train"), "ann_id": "x"},
        _ref(32, 1, 102, "train"),  # malformed box
        _ref(10, 1, 100, "val"),  # duplicate ref id
        _ref(33, 2, 200, "train"),  # annotation of another image
    ]
    anns = {100: (1, [4, 6, 20, 10]), 500: (5, [3, 3, 0, 10]), 600: (6, [100, 100, 10, 10]),
            700: (7, [50, 40, 20, 10]), 800: (8, [1, 1, 5, 5]), 801: (8, [1, 1, 5, 5]), 1100: (11, [1, 1, 5, 5]),
            900: (9, [1, 1, 5, 5]), 102: (1, ["a", 1, 2, 3]), 200: (1, [1, 1, 5, 5])}
    path = tmp_path / "refs(unc).p"
    path.write_bytes(py2_pickle(refs))
    inst = _instances(tmp_path / "instances.json", {i: (64, 48) for i in (1, 5, 6, 7, 8, 9, 11)}, anns)
    out = tmp_path / "out"
    manifest = refer.convert_refer(path, inst, root, out, progress=False)
    assert _counts(manifest) == {"bbox_empty": 1, "bbox_outside_image": 1, "no_text": 1, "unknown_annotation": 1,
                                 "missing_image": 1, "unreadable_image": 1, "unknown_split": 1, "bad_record": 4,
                                 "bbox_malformed": 1, "duplicate_ref": 1, "annotation_mismatch": 1}
    assert manifest["skipped"]["bbox_empty"]["examples"] == ["ref 20"]
    assert manifest["skipped"]["missing_image"]["examples"] == ["ref 26"]
    assert _counts(manifest, "dropped") == {"empty_caption": 3, "bad_caption": 2}
    assert manifest["adjusted"] == {"bbox_clipped": 1}
    assert [line["ref_id"] for line in _lines(out, "train")] == [10, 24]
    assert _lines(out, "train")[1]["texts"] == ["ok"]
    val = _lines(out, "val")
    assert [line["ref_id"] for line in val] == [22]
    assert val[0]["bbox"] == [50.0, 40.0, 14.0, 8.0]  # clipped to the 64x48 image


def test_exif_rotation_and_declared_size(tmp_path):
    root = tmp_path / "coco"
    _image(root / "train2014" / _name(1), size=(64, 48), orientation=6)  # displayed as 48x64
    _image(root / "train2014" / _name(2), size=(32, 24))  # a half-size copy of a 64x48 image
    refs = [_ref(1, 1, 10, "val"), _ref(2, 2, 20, "val")]
    path = tmp_path / "refs(unc).p"
    path.write_bytes(py2_pickle(refs))
    inst = _instances(tmp_path / "instances.json", {1: (64, 48), 2: (64, 48)},
                      {10: (1, [4, 6, 20, 10]), 20: (2, [4, 6, 20, 10])})
    out = tmp_path / "out"
    manifest = refer.convert_refer(path, inst, root, out, progress=False)
    rotated, half = _lines(out, "val")
    assert (rotated["width"], rotated["height"]) == (48, 64)
    assert rotated["bbox"] == [32.0, 4.0, 10.0, 20.0]  # the box turned with the image (stored top-left -> top-right)
    assert (half["width"], half["height"]) == (32, 24) and half["bbox"] == [2.0, 3.0, 10.0, 5.0]
    assert manifest["adjusted"] == {"bbox_exif_rotated": 1, "bbox_rescaled": 1}


def test_restricted_unpickler_refuses_code(refcoco, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 1, "x": Evil()}], protocol=2))
    out = tmp_path / "out"
    with pytest.raises(ConvertError) as exc:
        refer.convert_refer(path, refcoco["instances"], refcoco["root"], out, progress=False)
    message = str(exc.value)
    assert str(path) in message and "refused" in message and "system" in message
    assert not marker.exists()
    assert not (out / "manifest.json").exists()
    # a protocol-0 GLOBAL/REDUCE pickle and a class instance are refused the same way
    path.write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(ConvertError, match="refused"):
        refer.load_refs(path)
    path.write_bytes(pickle.dumps({1, 2}, protocol=2))
    with pytest.raises(ConvertError, match=r"refused: it names __builtin__\.set"):
        refer.load_refs(path)
    assert not marker.exists()


def test_truncated_inputs_name_the_file(refcoco, tmp_path):
    data = refcoco["refs_path"].read_bytes()
    cut = tmp_path / "cut.p"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConvertError, match=r"cut\.p.*truncated"):
        refer.convert_refer(cut, refcoco["instances"], refcoco["root"], tmp_path / "out", progress=False)
    text = refcoco["instances"].read_text()
    cut_inst = tmp_path / "cut_instances.json"
    cut_inst.write_text(text[: len(text) // 2])
    with pytest.raises(ConvertError, match=r"cut_instances\.json.*truncated"):
        refer.convert_refer(refcoco["refs_path"], cut_inst, refcoco["root"], tmp_path / "out", progress=False)
    not_a_list = tmp_path / "dict.p"
    not_a_list.write_bytes(py2_pickle({"refs": []}))
    with pytest.raises(ConvertError, match=r"dict\.p holds a dict"):
        refer.load_refs(not_a_list)


def test_cli_errors(refcoco, tmp_path, capsys):
    args = ["--refs", str(refcoco["refs_path"]), "--instances", str(refcoco["instances"]), "--no-progress"]
    with pytest.raises(SystemExit) as exc:
        refer.main([*args, "--images", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and f"--images {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit):
        refer.main([*args, "--images", str(empty), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "no line kept of 5" in err and "missing_image=5" in err and "train2014" in err
    out = tmp_path / "good"
    assert refer.main([*args, "--images", str(refcoco["root"]), "--out", str(out)]) == 0
    before = _tree(out)
    with pytest.raises(SystemExit):
        refer.main([*args, "--images", str(refcoco["root"]), "--out", str(out), "--source", "refcoco"])
    assert "other settings" in capsys.readouterr().err
    assert _tree(out) == before
