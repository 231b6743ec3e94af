"""VQA task folders -> items and batches: weighted answers, the reference's text formats, the careful flip,
malformed lines counted, the answer list checked, the majority answer."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from xvlm_lit.data.tasks.annotations import TaskDataError
from xvlm_lit.data.tasks.vqa import (
    VQACollate,
    VQAEvalSet,
    VQATaskDataModule,
    VQATrainSet,
    mentions_side,
    read_answer_list,
    read_vqa_split,
    weighted_answers,
)
from xvlm_lit.data.tokenizer import load_tokenizer
from xvlm_lit.data.transforms import ImageTextTransform

LINES = [
    {"image": "lr.png", "image_id": "x/1", "question_id": 1, "question": "What is on the LEFT?",
     "answers": ["red"] * 7 + ["pink"] * 3, "answer_weights": {"red": 0.7, "pink": 0.3}, "dataset": "vqa"},
    {"image": "lr.png", "image_id": "x/1", "question_id": 2, "question": "What colour is it?",
     "answers": ["red", "red", "blue"], "dataset": "vqa"},  # no answer_weights: count / number of answers
    {"image": "lr.png", "image_id": "x/1", "question_id": "vg-3", "question": "what shape?", "answers": ["square"],
     "dataset": "vg"},
    {"image": "lr.png", "image_id": "x/1", "question_id": 4, "question": "unanswered?", "answers": []},
    {"image": "missing.png", "image_id": "x/2", "question_id": 5, "question": "broken image?",
     "answers": ["yes"] * 10},
]
BAD = ["not json", json.dumps([1, 2]), json.dumps({"image": "lr.png", "question": "no id"}),
       json.dumps({"image": "lr.png", "question_id": 9, "question": "q", "answers": "yes"}),
       json.dumps({"image": "lr.png", "question_id": True, "question": "q"})]


@pytest.fixture
def folder(tmp_path) -> Path:
    img = Image.new("RGB", (32, 32), (255, 0, 0))
    img.paste((0, 0, 255), (16, 0, 32, 32))  # left half red, right half blue
    img.save(tmp_path / "lr.png")
    (tmp_path / "manifest.json").write_text(json.dumps({"task": "vqa", "image_root": str(tmp_path)}))
    rows = [json.dumps(x) for x in LINES] + BAD
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "val.jsonl").write_text("\n".join(json.dumps(x) for x in LINES) + "\n")
    (tmp_path / "answer_list.json").write_text(json.dumps(["red", "blue", "square", "yes"]))
    return tmp_path


def test_malformed_lines_are_counted_and_ids_kept(folder):
    split = read_vqa_split(folder, "train")
    assert [r["question_id"] for r in split.records] == [1, 2, "vg-3", 4, 5]
    assert split.skipped == {"bad_json": len(BAD)}


def test_answer_weights():
    assert weighted_answers(LINES[0]) == {"red": 0.7, "pink": 0.3}
    assert weighted_answers(LINES[1]) == pytest.approx({"red": 2 / 3, "blue": 1 / 3})
    assert weighted_answers(LINES[2]) == {"square": 0.5}  # a VG answer weighs 0.5
    assert weighted_answers(LINES[3]) == {}


def test_training_batch_formats(folder):
    tok = load_tokenizer()
    split = read_vqa_split(folder, "train")
    data = VQATrainSet(split, ImageTextTransform(32, train=True, scale=(0.5, 1.0), flip=False, randaugment=False))
    assert len(data) == 4 and data.skips.totals == {"no_answer": 1}  # question 4 has nothing to learn from
    items = [data[i] for i in range(4)]
    assert items[3] is None and data.skips.totals["missing_image"] == 1  # its file does not exist
    batch = VQACollate(tok, max_tokens=40, max_answer_tokens=8, train=True)(items)
    assert batch.images.shape == (3, 3, 32, 32) and batch.text_ids.shape[0] == 3
    assert tok.decode(batch.text_ids[0][batch.text_mask[0].bool()]) == "[CLS] what is on the left"  # no [SEP]
    assert batch.answer_question.tolist() == [0, 0, 1, 1, 2]
    assert batch.answer_weights.tolist() == pytest.approx([0.7, 0.3, 2 / 3, 1 / 3, 0.5])
    answers = [tok.decode(row[m.bool()]) for row, m in zip(batch.answer_ids, batch.answer_mask, strict=True)]
    assert answers == ["[CLS] red [SEP]", "[CLS] pink [SEP]", "[CLS] red [SEP]", "[CLS] blue [SEP]",
                       "[CLS] square [SEP]"]


def flipped(item) -> bool:
    """The left half of the (normalised) image is blue-ish after a flip."""
    img = item["image"]
    return bool(img[2, :, :8].mean() > img[0, :, :8].mean())


def test_flip_only_without_left_or_right():
    assert mentions_side(["what is leftmost"]) and mentions_side(["a", "Right"]) and not mentions_side(["red"])


def test_careful_flip(folder):
    split = read_vqa_split(folder, "val")
    transform = ImageTextTransform(32, train=True, scale=(1.0, 1.0), flip=False, randaugment=False)
    data = VQATrainSet(split, transform)
    torch.manual_seed(0)
    sided = [flipped(data[0]) for _ in range(30)]  # "what is on the left?"
    neutral = [flipped(data[1]) for _ in range(30)]  # "what colour is it?"
    assert not any(sided)
    assert any(neutral) and not all(neutral)
    off = VQATrainSet(split, transform, flip=False)
    assert not any(flipped(off[1]) for _ in range(10))


def test_eval_items_keep_every_question(folder):
    split = read_vqa_split(folder, "val")
    data = VQAEvalSet(split, 32)
    items = [data[i] for i in range(len(data))]
    assert [it["index"] for it in items] == list(range(5))
    assert [it["ok"] for it in items] == [True] * 4 + [False]  # the broken image is still answered
    batch = VQACollate(load_tokenizer(), 40, 8, train=False)(items)
    assert batch["index"].tolist() == list(range(5)) and batch["ok"].tolist() == [True] * 4 + [False]


def test_answer_list_checked(folder, tmp_path):
    assert read_answer_list(folder / "answer_list.json") == ["red", "blue", "square", "yes"]
    with pytest.raises(TaskDataError, match="not found"):
        read_answer_list(tmp_path / "nope.json")
    (tmp_path / "dup.json").write_text(json.dumps(["a", "b", "a"]))
    with pytest.raises(TaskDataError, match="repeat"):
        read_answer_list(tmp_path / "dup.json")
    (tmp_path / "bad.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(TaskDataError, match="list"):
        read_answer_list(tmp_path / "bad.json")


def test_datamodule_answer_tokens_and_majority(folder):
    dm = VQATaskDataModule(str(folder), image_size=32, train_split="train", val_split="val", test_splits=["val"],
                           num_workers=0, max_answer_tokens=8)
    ids, mask = dm.answer_tokens()
    assert ids.shape[0] == 4 and (ids[:, 0] == dm.tokenizer.cls_token_id).all()
    assert (ids.gather(1, mask.sum(1, keepdim=True) - 1) == dm.tokenizer.sep_token_id).all()
    # red: 0.7 + 2/3; yes: 1.0 (question 5); blue 1/3; square 0.5; pink 0.3
    assert dm.majority_answer() == "red"
    with pytest.raises(TaskDataError, match="not 'vqa'"):
        (folder / "manifest.json").write_text(json.dumps({"task": "retrieval"}))
        read_vqa_split(folder, "val")
