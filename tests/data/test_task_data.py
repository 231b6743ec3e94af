"""Task folders -> datasets: bad lines and images are counted skips, folder problems are errors naming the file,
grounding targets follow the box through the crop and the flip, and evaluation shards cover every sample once."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from xvlm_lit.data.tasks.annotations import TaskDataError, read_split
from xvlm_lit.data.tasks.grounding import GroundingSet
from xvlm_lit.data.tasks.retrieval import GalleryImages, RetrievalTrainSet, build_gallery
from xvlm_lit.data.tasks.samplers import ShardSampler
from xvlm_lit.data.transforms import ImageTextTransform


def write_folder(root: Path, task: str, lines: list, split: str = "val") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    Image.new("RGB", (80, 40), (200, 10, 10)).save(root / "images" / "a.jpg")
    (root / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "manifest.json").write_text(json.dumps({"task": task, "image_root": str(root / "images")}))
    (root / f"{split}.jsonl").write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return root


def test_bad_lines_are_counted_not_fatal(tmp_path):
    good = {"image": "a.jpg", "image_id": "t/1", "captions": ["A red box.", "red"]}
    root = write_folder(tmp_path / "r", "retrieval", [good, "{not json", [1, 2], {"image": "a.jpg"},
                                                      {**good, "captions": ["  "]}, ""])
    split = read_split(root, "val", "retrieval")
    assert len(split.records) == 1
    assert split.skipped == {"bad_json": 3, "no_caption": 1}
    gallery = build_gallery(split, max_words=30)
    assert gallery.texts == ["a red box", "red"] and gallery.text_to_image.tolist() == [0, 0]


def test_folder_problems_name_the_file(tmp_path):
    root = write_folder(tmp_path / "g", "grounding", [])
    with pytest.raises(TaskDataError, match=r"holds task 'grounding', not 'retrieval'"):
        read_split(root, "val", "retrieval")
    with pytest.raises(TaskDataError, match=r"test\.jsonl not found: the splits here are \['val'\]"):
        read_split(root, "test", "grounding")
    with pytest.raises(TaskDataError, match=r"manifest\.json not found"):
        read_split(tmp_path / "nowhere", "val", "grounding")


def test_unreadable_image_is_a_counted_skip(tmp_path):
    lines = [{"image": "broken.jpg", "image_id": "t/2", "captions": ["x"]},
             {"image": "missing.jpg", "image_id": "t/3", "captions": ["y"]}]
    split = read_split(write_folder(tmp_path / "r", "retrieval", lines), "val", "retrieval")
    train = RetrievalTrainSet(split, ImageTextTransform(32, train=True, randaugment=False))
    assert train[0] is None and train[1] is None
    assert train.skips.totals == {"corrupt_image": 1, "missing_image": 1}  # each under its own reason
    gallery = GalleryImages(split, 32)
    item = gallery[0]  # evaluation keeps the index aligned with the texts: a zero image, marked
    assert not item["ok"] and torch.equal(item["image"], torch.zeros(3, 32, 32))


def test_grounding_target_follows_the_box(tmp_path):
    box = [10, 5, 20, 30]  # x, y, w, h in the 80 x 40 image
    lines = [{"image": "a.jpg", "image_id": "t/1", "texts": ["the thing on the left"], "bbox": box},
             {"image": "a.jpg", "image_id": "t/1", "texts": ["outside"], "bbox": [70, 30, 50, 50]}]
    split = read_split(write_folder(tmp_path / "g", "grounding", lines), "val", "grounding")
    ev = GroundingSet(split, 64, train=False)
    item = ev[0]
    # plain resize of 80 x 40 to 64 x 64: x scales by 0.8, y by 1.6
    expected = torch.tensor([(10 + 10) * 0.8 / 64, (5 + 15) * 1.6 / 64, 20 * 0.8 / 64, 30 * 1.6 / 64])
    assert torch.allclose(item["target"], expected, atol=1e-5)
    assert item["box"].tolist() == box and item["size"].tolist() == [80, 40]
    assert ev[1] is None and ev.skips.totals["bbox_outside_image"] == 1
    train = GroundingSet(split, 64, train=True, randaugment=False)
    torch.manual_seed(0)
    texts = set()
    for _ in range(20):  # every random crop keeps the whole box; a flip swaps left/right in the text
        it = train[0]
        cx, cy, w, h = it["target"].tolist()
        assert 0 <= cx - w / 2 + 1e-4 and cx + w / 2 <= 1 + 1e-4 and 0 <= cy - h / 2 + 1e-4
        texts.add(it["text"])
    assert texts == {"the thing on the left", "the thing on the right"}


@pytest.mark.parametrize(("n", "world"), [(7, 2), (5, 3), (2, 4), (0, 2)])
def test_shard_sampler_covers_every_index_once(n, world):
    shards = [list(ShardSampler(n, r, world)) for r in range(world)]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(n)) and sum(len(ShardSampler(n, r, world)) for r in range(world)) == n
