"""Weakly supervised grounding training pairs: (whole image, referring expression, image id), no box.

The records are the grounding folder's (one per referred object, ``bbox`` present but unused here); every
expression of every object of one image shares that image's ``idx``, so they are ITC positives of each other and
never ITM negatives (the reference numbers images by file name). Evaluation uses :class:`GroundingSet` unchanged.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from xvlm_lit.data.images import image_skip_reason
from xvlm_lit.data.skips import SkipCounter
from xvlm_lit.data.tasks.annotations import TaskSplit, open_image
from xvlm_lit.data.tasks.grounding import expressions
from xvlm_lit.data.tasks.retrieval import item_rng
from xvlm_lit.data.transforms import ImageTextTransform


def image_indices(split: TaskSplit) -> list[int]:
    """``[len(records)]``: the position of each record's ``image_id`` among the split's distinct image ids."""
    seen: dict[str, int] = {}
    return [seen.setdefault(str(r["image_id"]), len(seen)) for r in split.records]


class WeakGroundingTrainSet(Dataset):
    """One item per (object, expression): ``{"image": [3, R, R], "text": str, "idx": int}`` (the image's index),
    or None for an unreadable image (counted; the collate function drops it).

    ``transform``: the reference's weak-grounding augmentation is a plain resize + flip + RandAugment
    (:class:`ImageTextTransform` with ``crop=False``); a flip swaps "left"/"right" in the text.
    """

    def __init__(self, split: TaskSplit, transform: ImageTextTransform, max_words: int = 30) -> None:
        self.split, self.transform = split, transform
        self.skips = SkipCounter(f"{split.split} weak grounding")
        self.items = expressions(split, max_words, self.skips)
        self.image_of_record = image_indices(split)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        i, text = self.items[index]
        path = self.split.image_path(self.split.records[i])
        try:
            img = open_image(path)
        except (OSError, ValueError) as err:
            self.skips.skip(image_skip_reason(err), str(err))
            return None
        image, texts, _ = self.transform(img, [text], item_rng())
        return {"image": image, "text": texts[0], "idx": self.image_of_record[i]}
