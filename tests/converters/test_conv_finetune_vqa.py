"""VQA v2 official files, Visual Genome QA and the X-VLM release's VQA files -> vqa task files (data_prep.vqa)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from data_prep import vqa
from data_prep.convert import ConvertError

ANSWERS_3 = ["2", "two", "2", "two", "two", "3", "two", "2", "two", "two"]  # 2: 3, two: 6, 3: 1


def _image(path: Path, size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 120, 200)).save(path, quality=90)
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


def _coco(image_id: int, folder: str) -> str:
    return f"{folder}/COCO_{folder}_{image_id:012d}.jpg"


def _answers(texts: list[str]) -> list[dict]:
    return [{"answer": t, "answer_confidence": "yes", "answer_id": i + 1} for i, t in enumerate(texts)]


def _ann(qid: int, image_id: int, texts: list[str]) -> dict:
    return {"question_id": qid, "image_id": image_id, "answers": _answers(texts),
            "multiple_choice_answer": texts[0], "answer_type": "other", "question_type": "what"}


def _questions(path: Path, subtype: str, questions: list) -> Path:
    return _json(path, {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {},
                        "data_subtype": subtype, "questions": questions})


def _annotations(path: Path, subtype: str, annotations: list) -> Path:
    return _json(path, {"info": {}, "license": {}, "data_subtype": subtype, "annotations": annotations})


@pytest.fixture
def data(tmp_path) -> dict:
    coco, vg = tmp_path / "coco", tmp_path / "vg"
    for i in (1, 2):
        _image(coco / _coco(i, "train2014"))
    _image(coco / _coco(3, "val2014"))
    _image(coco / _coco(5, "test2015"))
    _image(vg / "VG_100K" / "10.jpg")
    _image(vg / "VG_100K_2" / "11.jpg", size=(30, 40))
    train_q = [{"image_id": 1, "question": "How many dogs? ", "question_id": 1000},
               {"image_id": 1, "question": "What color is it?", "question_id": 1001},
               {"image_id": 2, "question": "Is it left?", "question_id": 2000}]
    train_a = [_ann(1000, 1, ANSWERS_3), _ann(1001, 1, ["red"] * 10), _ann(2000, 2, ["yes"] * 9 + ["no"])]
    val_q = [{"image_id": 3, "question": "What is this?", "question_id": 3000}]
    val_a = [_ann(3000, 3, ["net"] * 7 + ["netting", "mesh", "net"])]
    test_q = [{"image_id": 5, "question": "Why?", "question_id": 5000},
              {"image_id": 5, "question": "Who?", "question_id": 5001}]
    files = {
        "train_q": _questions(tmp_path / "v2_OpenEnded_mscoco_train2014_questions.json", "train2014", train_q),
        "train_a": _annotations(tmp_path / "v2_mscoco_train2014_annotations.json", "train2014", train_a),
        "val_q": _questions(tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json", "val2014", val_q),
        "val_a": _annotations(tmp_path / "v2_mscoco_val2014_annotations.json", "val2014", val_a),
        "test_q": _questions(tmp_path / "v2_OpenEnded_mscoco_test2015_questions.json", "test2015", test_q),
        "dev_q": _questions(tmp_path / "v2_OpenEnded_mscoco_test-dev2015_questions.json", "test-dev2015",
                            test_q[1:]),
        "vg_qa": _json(tmp_path / "question_answers.json", [
            {"id": 10, "qas": [{"qa_id": 7, "image_id": 10, "question": "What is on the table?",
                                "answer": "A cup.", "a_objects": [], "q_objects": []}]},
            {"id": 11, "qas": [{"qa_id": 8, "image_id": 11, "question": "Where?", "answer": "outside"},
                               {"qa_id": 9, "image_id": 11, "question": "When?", "answer": "day"}]}]),
    }
    return {"coco": coco, "vg": vg, **files}


def _official(data: dict, **kw) -> dict:
    args = {"questions": [data["train_q"], data["val_q"], data["test_q"], data["dev_q"]],
            "annotations": [data["train_a"], data["val_a"]], "vg_qa": data["vg_qa"], "vg_images": data["vg"],
            "progress": False}
    args.update(kw)
    return args


def test_official_happy_path(data, tmp_path):
    out = tmp_path / "out"
    manifest = vqa.convert_vqa(data["coco"], out, **_official(data, num_answers=3))
    assert manifest["task"] == "vqa" and manifest["skipped"] == {}
    assert manifest["splits"] == {"train": {"records": 6, "texts": 33}, "val": {"records": 1, "texts": 10},
                                  "test": {"records": 2, "texts": 0}, "test_dev": {"records": 1, "texts": 0}}
    assert manifest["input_records"] == 10
    train = _lines(out, "train")
    # the hand-computed case: 3 x "2", 6 x "two", 1 x "3" of 10 answers, in first-seen order
    assert train[0] == {"image": _coco(1, "train2014"), "image_id": "coco/1", "width": 64, "height": 48,
                        "question_id": 1000, "question": "How many dogs?", "answers": ANSWERS_3,
                        "answer_weights": {"2": 0.3, "two": 0.6, "3": 0.1}, "dataset": "vqa"}
    assert list(train[0]["answer_weights"]) == ["2", "two", "3"]
    assert train[2]["answer_weights"] == {"yes": 0.9, "no": 0.1}
    vg_lines = train[3:]
    assert [line["dataset"] for line in vg_lines] == ["vg"] * 3
    assert vg_lines[0]["answers"] == ["A cup."] and vg_lines[0]["answer_weights"] == {"A cup.": 0.5}
    assert vg_lines[0]["image_id"] == "vg/10" and vg_lines[0]["question_id"] == 7
    assert vg_lines[1]["image"] == str((data["vg"] / "VG_100K_2" / "11.jpg").resolve())  # outside --images
    assert (vg_lines[1]["width"], vg_lines[1]["height"]) == (30, 40)
    val = _lines(out, "val")
    assert val[0]["answers"] == ["net"] * 7 + ["netting", "mesh", "net"]
    assert val[0]["answer_weights"] == {"net": 0.8, "netting": 0.1, "mesh": 0.1}
    test = _lines(out, "test")
    assert [(line["question_id"], line["answers"], line["answer_weights"]) for line in test] == [
        (5000, [], {}), (5001, [], {})]
    assert test[0]["image"] == _coco(5, "test2015")
    assert [line["question_id"] for line in _lines(out, "test_dev")] == [5001]  # test-dev repeats test questions
    # built answer list: the most common answer per train/val VQA question: two, red, yes, net (1 each)
    answers = json.loads((out / "answer_list.json").read_text())
    assert answers == ["net", "red", "two"]
    assert manifest["answer_list"]["from"] == "built" and manifest["answer_list"]["answers"] == 3
    assert manifest["answer_list"]["coverage"] == 0.75
    assert manifest["files"] == ["answer_list.json"]
    assert sorted(p.name for p in out.iterdir()) == ["answer_list.json", "manifest.json", "test.jsonl",
                                                     "test_dev.jsonl", "train.jsonl", "val.jsonl"]


def test_images_without_subfolders_and_vg_inside_root(data, tmp_path):
    flat = tmp_path / "flat"
    for i, folder in ((1, "train2014"), (2, "train2014")):
        _image(flat / f"COCO_{folder}_{i:012d}.jpg")
    _image(flat / "visual_genome" / "VG_100K" / "10.jpg")
    _image(flat / "visual_genome" / "11.jpg")
    out = tmp_path / "out"
    manifest = vqa.convert_vqa(flat, out, questions=[data["train_q"]], annotations=[data["train_a"]],
                               vg_qa=data["vg_qa"], vg_images=flat / "visual_genome", progress=False)
    train = _lines(out, "train")
    assert train[0]["image"] == "COCO_train2014_000000000001.jpg"
    assert [line["image"] for line in train[3:]] == ["visual_genome/VG_100K/10.jpg", "visual_genome/11.jpg",
                                                     "visual_genome/11.jpg"]
    assert manifest["answer_list"]["num_answers"] == 3128


def test_planted_faults_are_skipped_and_counted(data, tmp_path):
    coco = data["coco"]
    (coco / _coco(4, "train2014")).parent.mkdir(parents=True, exist_ok=True)
    (coco / _coco(4, "train2014")).write_bytes(b"not a jpeg")
    questions = [
        {"image_id": 1, "question": "ok?", "question_id": 1},
        "oops",                                                   # not an object
        {"image_id": 1, "question": "no annotation?", "question_id": 2},
        {"image_id": "x", "question": "bad image id", "question_id": 3},   # wrong type
        {"image_id": 1, "question": ["a list"], "question_id": 4},          # wrong type
        {"image_id": 2, "question": "annotation on another image", "question_id": 5},
        {"image_id": 1, "question": "   ", "question_id": 6},               # empty question
        {"image_id": 1, "question": "all answers empty", "question_id": 7},
        {"image_id": 9, "question": "missing image", "question_id": 8},
        {"image_id": 4, "question": "broken image", "question_id": 9},
        {"image_id": 1, "question": "ok?", "question_id": 1},                # duplicate
        {"image_id": 1, "question": "some answers bad", "question_id": 10},
        {"image_id": 1, "question": "answers not a list", "question_id": 11},
    ]
    annotations = [_ann(1, 1, ["yes"] * 10), _ann(3, 1, ["a"] * 10), _ann(4, 1, ["a"] * 10),
                   _ann(5, 1, ["b"] * 10), _ann(6, 1, ["c"] * 10), _ann(7, 1, [""] * 10),
                   _ann(8, 9, ["d"] * 10), _ann(9, 4, ["e"] * 10), "junk", {"question_id": None},
                   {**_ann(10, 1, ["x"] * 8), "answers": [*_answers(["x"] * 8), {"answer": 5}, {"answer": " "}]},
                   {**_ann(11, 1, ["y"]), "answers": "y"}, _ann(99, 1, ["orphan"] * 10), _ann(1, 1, ["dup"] * 10)]
    q = _questions(tmp_path / "v2_OpenEnded_mscoco_train2014_questions.json", "train2014", questions)
    a = _annotations(tmp_path / "v2_mscoco_train2014_annotations.json", "train2014", annotations)
    vg = _json(tmp_path / "question_answers.json", [
        {"id": 10, "qas": [{"qa_id": 7, "image_id": 10, "question": "What?", "answer": "cup"},
                           42, {"qa_id": 8, "image_id": 10, "question": "Where?"},
                           {"qa_id": 9, "image_id": 11, "question": "Wrong image?", "answer": "x"},
                           {"qa_id": 12, "image_id": 10, "question": "Empty?", "answer": " "}]},
        {"id": 11, "qas": None}, []])
    out = tmp_path / "out"
    manifest = vqa.convert_vqa(coco, out, questions=[q], annotations=[a], vg_qa=vg, vg_images=data["vg"],
                               progress=False)
    assert _counts(manifest) == {"bad_record": 7, "no_annotation": 1, "annotation_mismatch": 2, "no_text": 1,
                                 "no_answer": 2, "missing_image": 1, "unreadable_image": 1,
                                 "duplicate_question": 1, "bad_annotation": 1}
    assert manifest["skipped"]["no_annotation"]["examples"] == ["question 2"]
    assert manifest["skipped"]["missing_image"]["examples"] == ["question 8"]
    assert "tried" in manifest["skipped_detail"]["missing_image"]
    assert _counts(manifest, "dropped") == {"bad_answer": 1, "empty_answer": 11}
    assert manifest["ignored"] == {"annotation_without_question": 1, "annotation_without_question_id": 2,
                                   "duplicate_annotation": 1}
    assert manifest["input_records"] == len(questions) + 5 + 2
    train = _lines(out, "train")
    assert [line["question_id"] for line in train] == [1, 10, 7]
    assert train[1]["answers"] == ["x"] * 8 and train[1]["answer_weights"] == {"x": 1.0}


def test_given_answer_list_is_validated_and_copied(data, tmp_path):
    given = _json(tmp_path / "answer_list.json", ["net", "two", " red ", "net", 3, "", "yes"])
    out = tmp_path / "out"
    manifest = vqa.convert_vqa(data["coco"], out, **_official(data, answer_list=given))
    assert json.loads((out / "answer_list.json").read_text()) == ["net", "two", "red", "yes"]
    info = manifest["answer_list"]
    assert info["from"] == "given" and info["input"] == "answer_list.json" and info["answers"] == 4
    assert info["dropped"] == {"bad_answer": 1, "duplicate_answer": 1, "empty_answer": 1}
    assert info["coverage"] == 1.0
    assert manifest["args"]["answer_list"] == "answer_list.json" and manifest["args"]["num_answers"] is None
    with pytest.raises(ConvertError, match="exclude each other"):
        vqa.convert_vqa(data["coco"], tmp_path / "o2", **_official(data, answer_list=given, num_answers=5))
    bad = _json(tmp_path / "answers_bad.json", {"answers": ["a"]})
    with pytest.raises(ConvertError, match="answers_bad.json"):
        vqa.convert_vqa(data["coco"], tmp_path / "o3", **_official(data, answer_list=bad))
    assert not (tmp_path / "o3" / "manifest.json").exists()


def test_xvlm_release_files(data, tmp_path):
    coco, vg = data["coco"], data["vg"]
    train = [{"question_id": 1000, "question": "How many?", "answer": ANSWERS_3, "image": _coco(1, "train2014"),
              "dataset": "vqa"},
             {"question_id": 2000, "question": "Is it?", "answer": "yes", "image": _coco(2, "train2014")},
             {"question_id": 1, "question": "gqa?", "answer": ["x"], "image": "/abs/x.jpg", "dataset": "gqa"},
             {"question_id": 2001, "question": "no answers", "answer": [], "image": _coco(2, "train2014")},
             {"question_id": 2002, "question": 5, "answer": ["a"], "image": _coco(2, "train2014")},
             {"question_id": "q7", "question": "str id", "answer": ["a"], "image": _coco(2, "train2014")}]
    vg_qa = [{"question": "What is it?", "answer": "a cup", "image": "image/10.jpg", "dataset": "vg"},
             {"question": "Where?", "answer": "outside", "image": "VG_100K_2/11.jpg", "dataset": "vg"}]
    test = [{"question_id": 5000, "question": "Why?", "image": _coco(5, "test2015"), "dataset": "vqa"},
            {"question": "no id", "image": _coco(5, "test2015"), "dataset": "vqa"}]
    files = [_json(tmp_path / "vqa_train.json", train), _json(tmp_path / "vg_qa.json", vg_qa),
             _json(tmp_path / "vqa_test.json", test)]
    answer_list = _json(tmp_path / "answer_list.json", ["two", "yes", "a cup"])
    out = tmp_path / "out"
    manifest = vqa.convert_vqa(coco, out, xvlm=[str(f) for f in files], vg_images=vg, answer_list=answer_list,
                               progress=False)
    assert manifest["source"] == "xvlm_vqa"
    assert _counts(manifest) == {"unknown_dataset": 1, "no_answer": 1, "bad_record": 3}
    lines = _lines(out, "train")
    assert [(line["question_id"], line["dataset"]) for line in lines] == [(1000, "vqa"), (2000, "vqa"),
                                                                          (-1, "vg"), (-2, "vg")]
    assert lines[0]["answer_weights"] == {"2": 0.3, "two": 0.6, "3": 0.1} and lines[0]["image_id"] == "coco/1"
    assert lines[1]["answers"] == ["yes"] and lines[1]["answer_weights"] == {"yes": 1.0}
    assert lines[2]["answer_weights"] == {"a cup": 0.5} and lines[2]["image_id"] == "vg/10"
    assert lines[2]["image"] == str((vg / "VG_100K" / "10.jpg").resolve())
    assert [line["question_id"] for line in _lines(out, "test")] == [5000]
    assert list(manifest["splits"]) == ["train", "test"]
    assert manifest["args"]["xvlm"] == [["train", "vqa_train.json"], ["train", "vg_qa.json"],
                                        ["test", "vqa_test.json"]]


def test_truncated_json_names_the_file(data, tmp_path):
    text = data["train_a"].read_text(encoding="utf-8")
    data["train_a"].write_text(text[: len(text) // 2], encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(ConvertError, match="v2_mscoco_train2014_annotations.json.*truncated"):
        vqa.convert_vqa(data["coco"], out, **_official(data))
    assert not (out / "manifest.json").exists()
    assert not [p for p in out.iterdir() if p.suffix in (".jsonl", ".tmp") or p.name == "answer_list.json"]


def test_questions_need_their_annotations(data, tmp_path):
    with pytest.raises(ConvertError, match="needs its answers.*v2_mscoco_val2014_annotations.json"):
        vqa.convert_vqa(data["coco"], tmp_path / "out", questions=[data["val_q"]], progress=False)
    assert not (tmp_path / "out").exists()


def test_split_from_data_subtype_when_the_name_says_nothing(data, tmp_path):
    q = tmp_path / "questions.json"
    q.write_bytes(data["val_q"].read_bytes())
    a = tmp_path / "answers.json"
    a.write_bytes(data["val_a"].read_bytes())
    manifest = vqa.convert_vqa(data["coco"], tmp_path / "out", questions=[q], annotations=[a], progress=False)
    assert manifest["splits"] == {"val": {"records": 1, "texts": 10}}


def test_missing_images_folder_is_an_error_naming_it(data, tmp_path, capsys):
    wrong = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as exc:
        vqa.main(["--questions", str(data["test_q"]), "--images", str(wrong), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert f"--images {wrong} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_nothing_kept_is_an_error_naming_the_paths_tried(data, tmp_path):
    empty = tmp_path / "empty_root"
    empty.mkdir()
    out = tmp_path / "out"
    with pytest.raises(ConvertError) as exc:
        vqa.convert_vqa(empty, out, questions=[data["train_q"]], annotations=[data["train_a"]], progress=False)
    message = str(exc.value)
    assert "no line kept of 3" in message and "missing_image=3" in message
    assert str(empty.resolve()) in message and "Check --images" in message
    assert not (out / "manifest.json").exists() and not (out / "answer_list.json").exists()
    assert json.loads((out / "manifest.failed.json").read_text())["skipped"]["missing_image"]["count"] == 3


def test_rerun_identical_and_other_settings_refused(data, tmp_path, capsys):
    out = tmp_path / "out"
    vqa.convert_vqa(data["coco"], out, **_official(data, workers=1))
    first = _tree(out)
    vqa.convert_vqa(data["coco"], out, **_official(data, workers=3))
    assert _tree(out) == first
    argv = ["--questions", str(data["train_q"]), "--annotations", str(data["train_a"]), "--images",
            str(data["coco"]), "--out", str(out), "--no-progress", "--num-answers", "2"]
    with pytest.raises(SystemExit) as exc:
        vqa.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "--overwrite" in err
    assert _tree(out) == first
    assert vqa.main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["answer_list.json", "manifest.json", "train.jsonl"]
    assert len(json.loads((out / "answer_list.json").read_text())) == 2
