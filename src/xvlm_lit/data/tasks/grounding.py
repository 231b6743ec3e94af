"""Grounding datasets: (image, referring expression) -> box, for training (box-keeping crop) and evaluation."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from xvlm_lit.data.decode import clean_texts
from xvlm_lit.data.images import image_skip_reason
from xvlm_lit.data.skips import SkipCounter
from xvlm_lit.data.tasks.annotations import TaskSplit, open_image
from xvlm_lit.data.tasks.retrieval import item_rng
from xvlm_lit.data.transforms import RegionTransform, box_xywh_to_cxcywh_norm


def expressions(split: TaskSplit, max_words: int, skips: SkipCounter) -> list[tuple[int, str]]:
    """(record index, cleaned text) for every usable expression of every record."""
    out = []
    for i, record in enumerate(split.records):
        out.extend((i, text) for text in clean_texts(record["texts"], max_words, str(record["image_id"]), skips))
    return out


class GroundingSet(Dataset):
    """One item per (object, expression).

    Training: a random crop that keeps the box, a flip that swaps "left"/"right" in the text, photometric
    RandAugment (:class:`RegionTransform`). Evaluation: the plain resize.

    Items: ``{"image": [3, R, R], "text": str, "target": [4] normalised (cx, cy, w, h) in the transformed image,
    "box": [4] (x, y, w, h) in original pixels, "size": [2] (width, height), "record": int}``, or None for an
    unreadable image or a box outside it (counted).
    """

    def __init__(self, split: TaskSplit, image_size: int, train: bool, max_words: int = 30,
                 randaugment: bool = True, flip: bool = True) -> None:
        self.split, self.image_size, self.train = split, image_size, train
        self.transform = RegionTransform(image_size, train=train, flip=flip, randaugment=randaugment)
        self.skips = SkipCounter(f"{split.split} grounding")
        self.items = expressions(split, max_words, self.skips)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        i, text = self.items[index]
        record = self.split.records[i]
        path = self.split.image_path(record)
        try:
            img = open_image(path)
        except (OSError, ValueError) as err:
            self.skips.skip(image_skip_reason(err), str(err))
            return None
        x, y, w, h = (float(v) for v in record["bbox"])
        if x < -1 or y < -1 or x + w > img.width + 1 or y + h > img.height + 1:
            self.skips.skip("bbox_outside_image", f"{path}: {record['bbox']} in {img.width}x{img.height}")
            return None
        box = [max(0.0, x), max(0.0, y), min(w, img.width - max(0.0, x)), min(h, img.height - max(0.0, y))]
        anns = [{"bbox": box, "texts": [text]}]
        image, kept, _ = self.transform(img, anns, 0, item_rng() if self.train else None)
        return {"image": image, "text": kept[0].texts[0],
                "target": box_xywh_to_cxcywh_norm(kept[0].bbox, self.image_size).float(),
                "box": torch.tensor(box, dtype=torch.float32), "size": torch.tensor([img.width, img.height]),
                "record": i}
