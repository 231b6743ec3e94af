"""Retrieval datasets: training pairs (image, one caption, image id) and the evaluation gallery (images, texts)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from xvlm_lit.data.decode import clean_texts
from xvlm_lit.data.images import image_skip_reason
from xvlm_lit.data.skips import SkipCounter
from xvlm_lit.data.tasks.annotations import TaskSplit, open_image
from xvlm_lit.data.text import clean_caption
from xvlm_lit.data.transforms import ImageTextTransform


def item_rng() -> random.Random:
    """A per-item generator drawn from torch's (per-worker seeded) global RNG, so runs are reproducible."""
    return random.Random(int(torch.randint(0, 2**62, ()).item()))


class RetrievalTrainSet(Dataset):
    """One item per (image, caption); ``idx`` is the image's position, so all its captions are positives.

    Items: ``{"image": FloatTensor [3, R, R], "text": str, "idx": int}`` or None for an unreadable image
    (counted in ``skips``; the collate function drops it).
    """

    def __init__(self, split: TaskSplit, transform: ImageTextTransform, max_words: int = 30) -> None:
        self.split, self.transform, self.skips = split, transform, SkipCounter(f"{split.split} retrieval")
        self.pairs: list[tuple[int, str]] = []
        for i, record in enumerate(split.records):
            texts = clean_texts(record["captions"], max_words, str(record["image_id"]), self.skips)
            self.pairs.extend((i, text) for text in texts)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        i, text = self.pairs[index]
        record = self.split.records[i]
        try:
            img = open_image(self.split.image_path(record))
        except (OSError, ValueError) as err:
            self.skips.skip(image_skip_reason(err), str(err))
            return None
        image, texts, _ = self.transform(img, [text], item_rng())
        return {"image": image, "text": texts[0], "idx": i}


@dataclass
class RetrievalGallery:
    """The evaluation side: ``Ni`` images (read by :class:`GalleryImages`) and ``Nt`` cleaned texts.

    Attributes:
        texts: ``Nt`` cleaned captions; ``text_to_image [Nt]`` the image of each; ``image_ids`` per image.
    """

    texts: list[str]
    text_to_image: torch.Tensor
    image_ids: list[str]


def build_gallery(split: TaskSplit, max_words: int = 30) -> RetrievalGallery:
    texts, owner = [], []
    for i, record in enumerate(split.records):
        for caption in record["captions"]:
            text = clean_caption(caption, max_words) if isinstance(caption, str) else ""
            if text:
                texts.append(text)
                owner.append(i)
    return RetrievalGallery(texts, torch.tensor(owner, dtype=torch.long), [r["image_id"] for r in split.records])


class GalleryImages(Dataset):
    """Evaluation images with the plain resize: ``{"image": [3, R, R], "index": int, "ok": bool}`` (an unreadable
    image gives a zero image with ``ok=False``, counted, so indices stay aligned with the texts)."""

    def __init__(self, split: TaskSplit, image_size: int) -> None:
        self.split, self.image_size = split, image_size
        self.transform = ImageTextTransform(image_size, train=False)
        self.skips = SkipCounter(f"{split.split} gallery")

    def __len__(self) -> int:
        return len(self.split.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.split.image_path(self.split.records[index])
        try:
            image, _, _ = self.transform(open_image(path), [])
            ok = True
        except (OSError, ValueError) as err:
            self.skips.skip(image_skip_reason(err), str(err))
            image, ok = torch.zeros(3, self.image_size, self.image_size), False
        return {"image": image, "index": index, "ok": ok}
