"""NLVR2 and captioning task folders -> datasets: bad lines counted, NLVR2 never flips an image whose sentence says
left or right, caption references come from the COCO gt file."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from xvlm_lit.data.tasks.annotations import TaskDataError
from xvlm_lit.data.tasks.caption import CaptionTrainSet, read_caption_split, read_references
from xvlm_lit.data.tasks.nlvr2 import NLVR2Set, read_nlvr2_split


def two_colour_image(path):
    arr = np.zeros((32, 32, 3), dtype=np.uint8)
    arr[:, :16] = (255, 0, 0)
    arr[:, 16:] = (0, 0, 255)
    Image.fromarray(arr).save(path)


def write_folder(root, task, splits):
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps({"task": task, "image_root": str(root)}))
    for name, lines in splits.items():
        (root / f"{name}.jsonl").write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n"
                                                    for x in lines))


def test_nlvr2_split_counts_bad_lines(tmp_path):
    two_colour_image(tmp_path / "a.png")
    good = {"images": ["a.png", "a.png"], "image_id": "p/0", "sentence": "the left image is red", "label": True}
    write_folder(tmp_path, "nlvr2", {"dev": [good, {**good, "label": "maybe"}, {**good, "images": ["a.png"]},
                                             "{not json", {**good, "label": "False"}]})
    split = read_nlvr2_split(tmp_path, "dev")
    assert [r["label"] for r in split.records] == [True, False]
    assert split.skipped == {"bad_label": 1, "bad_json": 2}
    with pytest.raises(TaskDataError, match="not 'nlvr2'"):
        write_folder(tmp_path / "cap", "caption", {"dev": []})
        read_nlvr2_split(tmp_path / "cap", "dev")


def test_nlvr2_never_flips_when_the_sentence_says_left_or_right(tmp_path):
    two_colour_image(tmp_path / "a.png")
    rows = [{"images": ["a.png", "a.png"], "image_id": f"p/{i}", "sentence": s, "label": True}
            for i, s in enumerate(["the left image is red on the left", "both images are red and blue"])]
    write_folder(tmp_path, "nlvr2", {"train": rows})
    data = NLVR2Set(read_nlvr2_split(tmp_path, "train"), 32, train=True, crop_scale=(1.0, 1.0), randaugment=False)
    torch.manual_seed(0)

    def left_is_red(image: torch.Tensor) -> bool:
        return bool(image[0, :, :8].mean() > image[2, :, :8].mean())

    said = [left_is_red(data[0]["image0"]) and left_is_red(data[0]["image1"]) for _ in range(20)]
    neutral = [left_is_red(data[1]["image0"]) for _ in range(20)]
    assert all(said) and not all(neutral) and any(neutral)
    assert data[0]["text"] == "the left image is red on the left"  # never rewritten


def test_caption_references_from_gt_file_or_records(tmp_path):
    rows = [{"image": "a.png", "image_id": 7, "captions": ["A red square.", "red"]},
            {"image": "a.png", "image_id": 8, "captions": ["blue"]}, {"image": "a.png", "image_id": 9, "captions": []}]
    write_folder(tmp_path, "caption", {"val": rows})
    split = read_caption_split(tmp_path, "val")
    assert len(split.records) == 2 and split.skipped == {"no_caption": 1}
    assert read_references(tmp_path, split) == {"7": ["A red square.", "red"], "8": ["blue"]}
    gt = {"images": [{"id": 7}, {"id": 8}], "annotations": [{"image_id": 7, "id": 0, "caption": "gt seven"},
                                                            {"image_id": 8, "id": 1, "caption": "gt eight"}]}
    (tmp_path / "val_gt.json").write_text(json.dumps(gt))
    assert read_references(tmp_path, split) == {"7": ["gt seven"], "8": ["gt eight"]}
    assert [t for _, t in CaptionTrainSet(split, None, 30).pairs] == ["a red square", "red", "blue"]
