"""Weak grounding data: the detections file (bad entries counted, a missing file named), the training pairs
(image id shared by every expression of an image, no box) and the TaskDataModule's weak_grounding mode."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.data.tasks.datamodule import TaskDataModule
from xvlm_lit.data.tasks.detections import DetectionsError, parse_detections, read_detections


def test_detections_count_bad_entries_and_match_prefixed_ids(tmp_path):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps({
        "1": [[0, 0, 10, 10], [0, 0, 0, 5], [1, 2, "a", 4], [1, 2, 3], [1, 2, True, 4]],
        "2": "not a list",
        "391895": [[1.5, 2, 3, 4, 0.93]],  # a trailing detector score is ignored
    }))
    dets = read_detections(path)
    assert dets.boxes["1"] == [[0.0, 0.0, 10.0, 10.0]] and "2" not in dets.boxes
    assert dets.skipped == {"bbox_empty": 1, "bbox_malformed": 3, "bad_entry": 1}
    assert dets.candidates("coco/391895") == [[1.5, 2.0, 3.0, 4.0]]  # the reference keys COCO images by id
    assert dets.candidates(391895) == [[1.5, 2.0, 3.0, 4.0]] and dets.candidates("coco/7") == []
    assert dets.path == path and len(dets) == 2


def test_detections_errors_name_the_file(tmp_path):
    missing = tmp_path / "nowhere" / "dets.json"
    with pytest.raises(DetectionsError, match=str(missing)):
        read_detections(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"1": [[0, 0')
    with pytest.raises(DetectionsError, match="broken.json: not valid JSON"):
        read_detections(broken)
    with pytest.raises(DetectionsError, match="expected a JSON object"):
        parse_detections([[0, 0, 1, 1]], "x.json")


def grounding_folder(root: Path) -> Path:
    """2 images (3 objects; the first image has 2) in train and val; manifest task grounding."""
    (root / "images").mkdir(parents=True)
    for name, colour in (("a.jpg", (200, 0, 0)), ("b.jpg", (0, 0, 200))):
        Image.new("RGB", (40, 30), colour).save(root / "images" / name)
    rows = [{"image": "a.jpg", "image_id": "t/a", "width": 40, "height": 30, "ref_id": 0,
             "texts": ["red thing on the left", "left red"], "bbox": [1, 2, 10, 10]},
            {"image": "b.jpg", "image_id": "t/b", "width": 40, "height": 30, "ref_id": 1,
             "texts": ["blue thing"], "bbox": [5, 5, 20, 20]},
            {"image": "a.jpg", "image_id": "t/a", "width": 40, "height": 30, "ref_id": 2,
             "texts": ["the other red one"], "bbox": [20, 10, 15, 15]}]
    for split in ("train", "val"):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "manifest.json").write_text(json.dumps({"task": "grounding", "image_root": str(root / "images")}))
    return root


def test_weak_grounding_mode_trains_on_image_ids_and_evaluates_as_grounding(tmp_path, tokenizer):
    dm = TaskDataModule("weak_grounding", str(grounding_folder(tmp_path / "g")), image_size=32, batch_size=4,
                        eval_batch_size=4, val_split="val", test_splits=["val"], num_workers=0, randaugment=False)
    train = dm.train_dataset()
    assert len(train) == 4  # one item per (object, expression)
    items = [train[i] for i in range(len(train))]
    assert [it["idx"] for it in items] == [0, 0, 1, 0]  # objects 0 and 2 share image t/a
    assert all(set(it) == {"image", "text", "idx"} and it["image"].shape == (3, 32, 32) for it in items)
    assert {it["text"] for it in items[2:]} == {"blue thing", "the other red one"}

    torch.manual_seed(0)
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, VLBatch) and batch.target_box is None and batch.idx is not None
    assert sorted(batch.idx.tolist()) == [0, 0, 0, 1]

    ev = next(iter(dm.eval_dataloader("val")))
    assert ev["box"].tolist()[2] == [5.0, 5.0, 20.0, 20.0] and ev["size"].tolist()[0] == [40, 30]
    assert ev["record"].tolist() == [0, 0, 1, 2]


def test_grounding_and_retrieval_modes_still_need_their_manifest(tmp_path):
    from xvlm_lit.data.tasks.annotations import TaskDataError

    folder = grounding_folder(tmp_path / "g")
    with pytest.raises(TaskDataError, match="not 'retrieval'"):
        TaskDataModule("retrieval", str(folder)).split("train")
    assert len(TaskDataModule("grounding", str(folder)).split("train").records) == 3
