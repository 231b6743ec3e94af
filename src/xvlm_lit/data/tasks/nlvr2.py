"""NLVR2 data: (image pair, sentence, true/false) from a task folder written by ``python -m data_prep.nlvr2``.

Folder: ``manifest.json`` (``{"task": "nlvr2", "image_root"}``) and ``<split>.jsonl`` (train, dev, test1), one line
per example: ``{"images": [path0, path1], "image_id", "sentence", "label": true|false, "sizes": [[w, h], [w, h]]}``.

Training augmentation (SPEC section 7): each image gets its own RandomResizedCrop(0.5-1) + RandAugment; a
horizontal flip only when the sentence says neither "left" nor "right" (in NLVR2 they name the image *or* a side
within one image, so no swap of the words can be right; the reference flips regardless). Evaluation: plain resize.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.data.images import image_skip_reason
from xvlm_lit.data.skips import SkipCounter
from xvlm_lit.data.tasks.annotations import TaskSplit, open_image, read_split
from xvlm_lit.data.tasks.readable import ReadableItems
from xvlm_lit.data.tasks.retrieval import item_rng
from xvlm_lit.data.tasks.samplers import ShardSampler, task_loader, train_sampler
from xvlm_lit.data.text import clean_caption
from xvlm_lit.data.tokenizer import encode_captions, load_tokenizer, pad_ids
from xvlm_lit.data.transforms import ImageTextTransform

TASK = "nlvr2"


@dataclass
class NLVRBatch(VLBatch):
    """One sentence about two images per row; ``images`` holds the left images ``[T, 3, R, R]`` (one per text).

    Attributes:
        images_right: ``[T, 3, R, R]`` the right images.
        labels: ``[T]`` long, 1 = the sentence is true of the pair.
        record: ``[T]`` the example's line in its split (evaluation).
    """

    images_right: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    record: torch.Tensor | None = None


def parse_label(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _check(record: Any) -> str | None:
    if not isinstance(record, dict) or any(k not in record for k in ("images", "sentence", "label")):
        return "bad_json"
    images = record["images"]
    if not (isinstance(images, list) and len(images) == 2 and all(isinstance(p, str) and p for p in images)):
        return "bad_json"
    if not isinstance(record["sentence"], str) or not record["sentence"].strip():
        return "no_caption"
    if parse_label(record["label"]) is None:
        return "bad_label"
    return None


def read_nlvr2_split(root: str | os.PathLike, split: str, limit: int | None = None) -> TaskSplit:
    """The usable records of ``<root>/<split>.jsonl`` (at most ``limit``; malformed lines skipped and counted)."""
    return read_split(root, split, TASK, limit, check=_check, convert=lambda r: {**r, "label": parse_label(r["label"])},
                      hint="convert NLVR2 with python -m data_prep.nlvr2")


class NLVR2Set(Dataset):
    """Items ``{"image0", "image1": [3, R, R], "text": str, "label": int, "record": int}`` or None for an
    unreadable image or an empty cleaned sentence (counted; the collate function drops it)."""

    def __init__(self, split: TaskSplit, image_size: int, train: bool, max_words: int = 30,
                 crop_scale: Sequence[float] = (0.5, 1.0), randaugment: bool = True, flip: bool = True) -> None:
        self.split, self.train, self.max_words = split, train, max_words
        self.transform = ImageTextTransform(image_size, train=train, scale=tuple(crop_scale), flip=flip,
                                            randaugment=randaugment, flip_mode="avoid")
        self.skips = SkipCounter(f"{split.split} nlvr2")

    def __len__(self) -> int:
        return len(self.split.records)

    def image_path(self, rel: str) -> Path:
        path = Path(rel)
        return path if path.is_absolute() else self.split.image_root / path

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        record = self.split.records[index]
        text = clean_caption(record["sentence"], self.max_words)
        if not text:
            self.skips.skip("empty_caption", f"{record.get('image_id')}: {record['sentence']!r}")
            return None
        images = []
        for rel in record["images"]:
            path = self.image_path(rel)
            try:
                img = open_image(path)
            except (OSError, ValueError) as err:
                self.skips.skip(image_skip_reason(err), str(err))
                return None
            image, _, _ = self.transform(img, [text], item_rng() if self.train else None)
            images.append(image)
        return {"image0": images[0], "image1": images[1], "text": text, "label": int(record["label"]),
                "record": index}


class NLVR2Collate:
    """Items -> :class:`NLVRBatch` (``[CLS] wordpieces``, no [SEP], padded to the batch's longest)."""

    def __init__(self, tokenizer, max_tokens: int) -> None:
        self.tokenizer, self.max_tokens = tokenizer, max_tokens

    def __call__(self, items: Sequence[dict[str, Any] | None]) -> NLVRBatch | None:
        items = [it for it in items if it is not None]
        if not items:
            return None
        ids = encode_captions(self.tokenizer, [it["text"] for it in items], self.max_tokens)
        text_ids, text_mask = pad_ids(ids, max(len(i) for i in ids), pad_id=self.tokenizer.pad_token_id or 0)
        return NLVRBatch(images=torch.stack([it["image0"] for it in items]), text_ids=text_ids, text_mask=text_mask,
                         images_right=torch.stack([it["image1"] for it in items]),
                         labels=torch.tensor([it["label"] for it in items]),
                         record=torch.tensor([it["record"] for it in items]))


class NLVR2TaskDataModule(L.LightningDataModule):
    """NLVR2 training, validation (``dev``) and test (``test1``) loaders; evaluation reads every example once
    over all ranks (:class:`ShardSampler`).

    Args:
        root: the converter's output folder; splits named by ``train_split``, ``val_split``, ``test_splits``.
        image_size, batch_size, eval_batch_size (per device), tokenizer_path, max_tokens, max_words,
        crop_scale, randaugment, flip, num_workers, limit: as :class:`~xvlm_lit.data.tasks.datamodule.TaskDataModule`.
    """

    def __init__(self, root: str, image_size: int = 384, batch_size: int = 10, eval_batch_size: int = 32,
                 train_split: str = "train", val_split: str = "dev", test_splits: Sequence[str] = ("test1",),
                 tokenizer_path: str | None = None, max_tokens: int = 40, max_words: int = 30,
                 crop_scale: Sequence[float] = (0.5, 1.0), randaugment: bool = True, flip: bool = True,
                 num_workers: int = 4, limit: int | None = None) -> None:
        super().__init__()
        self.root = os.path.expanduser(str(root))
        self.image_size, self.batch_size, self.eval_batch_size = image_size, batch_size, eval_batch_size
        self.train_split, self.val_split, self.test_splits = train_split, val_split, list(test_splits)
        self.tokenizer_path, self.max_tokens, self.max_words = tokenizer_path, max_tokens, max_words
        self.crop_scale, self.randaugment, self.flip = tuple(crop_scale), randaugment, flip
        self.num_workers, self.limit = num_workers, limit
        self._tokenizer = None
        self._splits: dict[str, TaskSplit] = {}

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_path)
        return self._tokenizer

    def split(self, name: str) -> TaskSplit:
        if name not in self._splits:
            self._splits[name] = read_nlvr2_split(self.root, name, self.limit)
        return self._splits[name]

    def majority_label(self) -> int:
        """The most frequent training label (1 = true; a tie gives true): the trivial baseline's answer."""
        counts = Counter(int(r["label"]) for r in self.split(self.train_split).records)
        return 1 if counts[1] >= counts[0] else 0

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, dataset: Dataset, batch_size: int, sampler) -> DataLoader:
        return task_loader(dataset, sampler, batch_size=batch_size, num_workers=self.num_workers,
                          collate_fn=NLVR2Collate(self.tokenizer, self.max_tokens),
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        dataset = ReadableItems(NLVR2Set(self.split(self.train_split), self.image_size, train=True,
                                         max_words=self.max_words, crop_scale=self.crop_scale,
                                         randaugment=self.randaugment, flip=self.flip), f"nlvr2 {self.train_split}")
        sampler = train_sampler(self, dataset)
        return self._loader(dataset, self.batch_size, sampler)

    def eval_dataloader(self, name: str) -> DataLoader:
        dataset = NLVR2Set(self.split(name), self.image_size, train=False, max_words=self.max_words)
        return self._loader(dataset, self.eval_batch_size, ShardSampler(len(dataset), *self._rank_world()))

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader(self.val_split)

    def test_dataloader(self) -> list[DataLoader]:
        return [self.eval_dataloader(name) for name in self.test_splits]
