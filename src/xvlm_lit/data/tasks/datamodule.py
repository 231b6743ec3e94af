"""``TaskDataModule``: a task annotation folder -> training, validation and test loaders for one task."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from xvlm_lit.data.tasks.annotations import TaskSplit, read_split
from xvlm_lit.data.tasks.collate import TaskCollate
from xvlm_lit.data.tasks.grounding import GroundingSet
from xvlm_lit.data.tasks.readable import ReadableItems
from xvlm_lit.data.tasks.retrieval import GalleryImages, RetrievalGallery, RetrievalTrainSet, build_gallery
from xvlm_lit.data.tasks.samplers import ShardSampler, task_loader, train_sampler
from xvlm_lit.data.tasks.weak_grounding import WeakGroundingTrainSet
from xvlm_lit.data.tokenizer import load_tokenizer
from xvlm_lit.data.transforms import ImageTextTransform

TASKS = ("retrieval", "grounding", "weak_grounding")
#: the manifest task of the folder a task reads, where it differs (weak grounding reads a grounding folder)
FOLDER_TASK = {"weak_grounding": "grounding"}
#: the training collate kind, where it differs from the task (weak grounding trains like retrieval: idx = image)
TRAIN_KIND = {"weak_grounding": "retrieval"}


class TaskDataModule(L.LightningDataModule):
    """Fine-tuning data of one task.

    Args:
        task: ``retrieval``, ``grounding`` (the folder's manifest must say the same) or ``weak_grounding`` (a
            grounding folder; training pairs (image, expression, image id) without boxes, evaluation as grounding).
        root: the converter's output folder (``manifest.json`` + ``<split>.jsonl``).
        train_split, val_split, test_splits: split names (``test_splits`` may list several: testA, testB).
        image_size: ``R``; batch_size / eval_batch_size per device.
        crop_scale: retrieval training RandomResizedCrop area range (reference: 0.5-1.0).
        randaugment, flip: training augmentation switches.
        limit: at most this many records per split (demos, smoke tests); None = all.
    """

    def __init__(self, task: str, root: str, image_size: int = 384, batch_size: int = 32, eval_batch_size: int = 64,
                 train_split: str = "train", val_split: str = "val", test_splits: Sequence[str] = ("test",),
                 tokenizer_path: str | None = None, max_tokens: int = 40, max_words: int = 30,
                 crop_scale: Sequence[float] = (0.5, 1.0), randaugment: bool = True, flip: bool = True,
                 num_workers: int = 4, limit: int | None = None) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"data.task={task!r}: choose one of {TASKS}")
        self.task, self.root = task, os.path.expanduser(str(root))
        self.image_size, self.batch_size, self.eval_batch_size = image_size, batch_size, eval_batch_size
        self.train_split, self.val_split, self.test_splits = train_split, val_split, list(test_splits)
        self.tokenizer_path, self.max_tokens, self.max_words = tokenizer_path, max_tokens, max_words
        self.crop_scale, self.randaugment, self.flip = tuple(crop_scale), randaugment, flip
        self.num_workers, self.limit = num_workers, limit
        self._tokenizer = None
        self._splits: dict[str, TaskSplit] = {}

    # ------------------------------------------------------------------ shared pieces
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_path)
        return self._tokenizer

    def split(self, name: str) -> TaskSplit:
        if name not in self._splits:
            self._splits[name] = read_split(self.root, name, FOLDER_TASK.get(self.task, self.task), self.limit)
        return self._splits[name]

    def gallery(self, name: str) -> tuple[RetrievalGallery, torch.Tensor, torch.Tensor]:
        """Retrieval evaluation texts of split ``name``: (gallery, text_ids ``[Nt, L]``, text_mask ``[Nt, L]``)."""
        gallery = build_gallery(self.split(name), self.max_words)
        ids, mask = TaskCollate(self.tokenizer, self.max_tokens, "retrieval").tokens(gallery.texts)
        return gallery, ids, mask

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, dataset: Dataset, kind: str, batch_size: int, sampler) -> DataLoader:
        return task_loader(dataset, sampler, batch_size=batch_size, num_workers=self.num_workers,
                          collate_fn=TaskCollate(self.tokenizer, self.max_tokens, kind),
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    # ------------------------------------------------------------------ loaders
    def train_dataset(self) -> Dataset:
        split = self.split(self.train_split)
        if self.task == "retrieval":
            transform = ImageTextTransform(self.image_size, train=True, scale=self.crop_scale, flip=self.flip,
                                           randaugment=self.randaugment)
            return RetrievalTrainSet(split, transform, self.max_words)
        if self.task == "weak_grounding":  # the reference: plain resize (no crop) + flip + RandAugment
            transform = ImageTextTransform(self.image_size, train=True, crop=False, flip=self.flip,
                                           randaugment=self.randaugment)
            return WeakGroundingTrainSet(split, transform, self.max_words)
        return GroundingSet(split, self.image_size, train=True, max_words=self.max_words,
                            randaugment=self.randaugment, flip=self.flip)

    def eval_dataset(self, name: str) -> Dataset:
        if self.task == "retrieval":
            return GalleryImages(self.split(name), self.image_size)
        return GroundingSet(self.split(name), self.image_size, train=False, max_words=self.max_words)

    def train_dataloader(self) -> DataLoader:
        dataset = ReadableItems(self.train_dataset(), f"{self.task} {self.train_split}")
        sampler = train_sampler(self, dataset)
        return self._loader(dataset, TRAIN_KIND.get(self.task, self.task), self.batch_size, sampler)

    def eval_dataloader(self, name: str) -> DataLoader:
        dataset = self.eval_dataset(name)
        kind = "gallery" if self.task == "retrieval" else "grounding_eval"
        return self._loader(dataset, kind, self.eval_batch_size, ShardSampler(len(dataset), *self._rank_world()))

    def _eval_loader(self, name: str) -> DataLoader:
        if self.task == "retrieval":  # one step per split: the protocol reads the split's gallery itself
            return DataLoader([name], batch_size=1, collate_fn=_first)
        return self.eval_dataloader(name)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_split)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(name) for name in self.test_splits]


def _first(items: list[Any]) -> Any:
    return items[0]
