"""Captioning data: a task folder written by ``python -m data_prep.coco_caption`` (or ``data_prep.shapes_caption``).

Folder: ``manifest.json`` (``{"task": "caption", "image_root"}``), ``<split>.jsonl`` with one line per image
``{"image", "image_id", "width", "height", "captions": [...]}`` and, for evaluation splits, ``<split>_gt.json`` in
COCO caption format (``{"images": [{"id"}], "annotations": [{"image_id", "caption"}]}``), the references scored
against (the split's own captions when the file is absent).

Training: one item per (image, caption), text ``[CLS] prompt caption [SEP]`` (the caption cleaned, at most
``max_words`` words; the whole at most ``max_tokens``), ``lm_labels`` -100 on [CLS], the prompt and the padding.
Augmentation (SPEC section 7): RandomResizedCrop(0.5-1) + flip (left/right swapped in the caption) + RandAugment.
Evaluation: one item per image, plain resize.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.data.decode import clean_texts
from xvlm_lit.data.images import image_skip_reason
from xvlm_lit.data.skips import SkipCounter
from xvlm_lit.data.tasks.annotations import TaskDataError, TaskSplit, check_record, open_image, read_split
from xvlm_lit.data.tasks.readable import ReadableItems
from xvlm_lit.data.tasks.retrieval import item_rng
from xvlm_lit.data.tasks.samplers import ShardSampler, task_loader, train_sampler
from xvlm_lit.data.tokenizer import encode_captions, load_tokenizer, pad_ids
from xvlm_lit.data.transforms import ImageTextTransform

TASK = "caption"
IGNORE = -100


@dataclass
class CaptionBatch(VLBatch):
    """Training: ``text_ids`` ``[CLS] prompt caption [SEP]``; ``lm_labels [T, L]`` the ids to predict (-100 on
    [CLS], the prompt and padding). Evaluation: ``images`` alone with ``record [B]`` (no text)."""

    lm_labels: torch.Tensor | None = None
    record: torch.Tensor | None = None


def _check(record: Any) -> str | None:
    """The skip reason of a malformed line (the retrieval fields: image, image_id, captions), or None."""
    return check_record(record, "retrieval")


def read_caption_split(root: str | os.PathLike, split: str, limit: int | None = None) -> TaskSplit:
    """The usable records of ``<root>/<split>.jsonl`` (at most ``limit``; malformed lines skipped and counted)."""
    return read_split(root, split, TASK, limit, check=_check, hint="convert with python -m data_prep.coco_caption")


def read_references(root: str | os.PathLike, split: TaskSplit) -> dict[str, list[str]]:
    """``{str(image_id): [reference captions]}`` of the split's images: from ``<split>_gt.json`` when present (its
    captions as written, as pycocoevalcap scores them), else the records' own captions."""
    wanted = {str(r["image_id"]) for r in split.records}
    path = Path(root) / f"{split.split}_gt.json"
    refs: dict[str, list[str]] = {}
    if path.is_file():
        try:
            gt = json.loads(path.read_text(encoding="utf-8"))
            for ann in gt["annotations"]:
                key = str(ann["image_id"])
                if key in wanted:
                    refs.setdefault(key, []).append(str(ann["caption"]))
        except (ValueError, KeyError, TypeError) as err:
            raise TaskDataError(f"{path}: not a COCO caption file ({err}); re-run the converter") from err
        missing = wanted - set(refs)
        if missing:
            raise TaskDataError(f"{path} has no reference for {len(missing)} image(s) of {split.split}.jsonl "
                                f"(e.g. {sorted(missing)[:3]})")
        return refs
    for r in split.records:
        refs[str(r["image_id"])] = [c for c in r["captions"] if isinstance(c, str) and c.strip()]
    return refs


class CaptionTrainSet(Dataset):
    """One item per (image, caption): ``{"image": [3, R, R], "text": cleaned caption}`` or None (unreadable image,
    counted)."""

    def __init__(self, split: TaskSplit, transform: ImageTextTransform, max_words: int = 30) -> None:
        self.split, self.transform = split, transform
        self.skips = SkipCounter(f"{split.split} caption")
        self.pairs: list[tuple[int, str]] = []
        for i, record in enumerate(split.records):
            texts = clean_texts(record["captions"], max_words, str(record["image_id"]), self.skips)
            self.pairs.extend((i, text) for text in texts)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        i, text = self.pairs[index]
        path = self.split.image_path(self.split.records[i])
        try:
            img = open_image(path)
        except (OSError, ValueError) as err:
            self.skips.skip(image_skip_reason(err), str(err))
            return None
        image, texts, _ = self.transform(img, [text], item_rng())
        return {"image": image, "text": texts[0]}


class CaptionImages(Dataset):
    """Evaluation images: ``{"image": [3, R, R], "record": int}`` (an unreadable image gives a zero image, counted,
    so every image still gets a caption and the scores cover the whole split)."""

    def __init__(self, split: TaskSplit, image_size: int) -> None:
        self.split, self.image_size = split, image_size
        self.transform = ImageTextTransform(image_size, train=False)
        self.skips = SkipCounter(f"{split.split} caption images")

    def __len__(self) -> int:
        return len(self.split.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.split.image_path(self.split.records[index])
        try:
            image, _, _ = self.transform(open_image(path), [])
        except (OSError, ValueError) as err:
            self.skips.skip(image_skip_reason(err), str(err))
            image = torch.zeros(3, self.image_size, self.image_size)
        return {"image": image, "record": index}


class CaptionCollate:
    """Training items -> :class:`CaptionBatch` with ``lm_labels``; evaluation items -> images + record indices."""

    def __init__(self, tokenizer, max_tokens: int, prompt: str, train: bool) -> None:
        self.tokenizer, self.max_tokens, self.prompt, self.train = tokenizer, max_tokens, prompt, train
        #: [CLS] + the prompt's wordpieces: the positions never learned (the reference's prompt_length)
        pieces = tokenizer(prompt.strip(), add_special_tokens=False)["input_ids"] if prompt.strip() else []
        self.prompt_tokens = 1 + len(pieces)

    def __call__(self, items: Sequence[dict[str, Any] | None]) -> CaptionBatch | None:
        items = [it for it in items if it is not None]
        if not items:
            return None
        images = torch.stack([it["image"] for it in items])
        if not self.train:
            empty = torch.zeros(len(items), 1, dtype=torch.long)
            return CaptionBatch(images=images, text_ids=empty, text_mask=empty,
                                record=torch.tensor([it["record"] for it in items]))
        texts = [self.prompt + it["text"] for it in items]
        ids = encode_captions(self.tokenizer, texts, self.max_tokens, add_sep=True)
        text_ids, text_mask = pad_ids(ids, max(len(i) for i in ids), pad_id=self.tokenizer.pad_token_id or 0)
        labels = text_ids.masked_fill(text_mask == 0, IGNORE)
        labels[:, : self.prompt_tokens] = IGNORE
        return CaptionBatch(images=images, text_ids=text_ids, text_mask=text_mask, lm_labels=labels)


class CaptionTaskDataModule(L.LightningDataModule):
    """Captioning training, validation and test loaders; evaluation captions every image once over all ranks.

    Args:
        root, image_size, batch_size, eval_batch_size, train_split, val_split, test_splits, tokenizer_path,
        crop_scale, randaugment, flip, num_workers, limit: as :class:`~xvlm_lit.data.tasks.datamodule.TaskDataModule`.
        max_tokens: the whole ``[CLS] prompt caption [SEP]`` (reference: 40); max_words: caption words kept
            (the reference passes max_tokens, 40).
        prompt: text before every caption (reference: ``"a picture of "``), never learned.
    """

    def __init__(self, root: str, image_size: int = 384, batch_size: int = 32, eval_batch_size: int = 32,
                 train_split: str = "train", val_split: str = "val", test_splits: Sequence[str] = ("test",),
                 tokenizer_path: str | None = None, max_tokens: int = 40, max_words: int = 40,
                 prompt: str = "a picture of ", crop_scale: Sequence[float] = (0.5, 1.0), randaugment: bool = True,
                 flip: bool = True, num_workers: int = 4, limit: int | None = None) -> None:
        super().__init__()
        self.root = os.path.expanduser(str(root))
        self.image_size, self.batch_size, self.eval_batch_size = image_size, batch_size, eval_batch_size
        self.train_split, self.val_split, self.test_splits = train_split, val_split, list(test_splits)
        self.tokenizer_path, self.max_tokens, self.max_words = tokenizer_path, max_tokens, max_words
        self.prompt = prompt
        self.crop_scale, self.randaugment, self.flip = tuple(crop_scale), randaugment, flip
        self.num_workers, self.limit = num_workers, limit
        self._tokenizer = None
        self._splits: dict[str, TaskSplit] = {}
        self._refs: dict[str, dict[str, list[str]]] = {}

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_path)
        return self._tokenizer

    def split(self, name: str) -> TaskSplit:
        if name not in self._splits:
            self._splits[name] = read_caption_split(self.root, name, self.limit)
        return self._splits[name]

    def references(self, name: str) -> dict[str, list[str]]:
        """``{str(image_id): [captions]}`` scored against for split ``name``."""
        if name not in self._refs:
            self._refs[name] = read_references(self.root, self.split(name))
        return self._refs[name]

    def training_captions(self) -> list[str]:
        """Every cleaned training caption (the constant-caption baseline draws its candidates from them)."""
        return [text for _, text in CaptionTrainSet(self.split(self.train_split), None, self.max_words).pairs]

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, dataset: Dataset, batch_size: int, sampler, train: bool) -> DataLoader:
        return task_loader(dataset, sampler, batch_size=batch_size, num_workers=self.num_workers,
                          collate_fn=CaptionCollate(self.tokenizer, self.max_tokens, self.prompt, train),
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        transform = ImageTextTransform(self.image_size, train=True, scale=self.crop_scale, flip=self.flip,
                                       randaugment=self.randaugment)
        dataset = ReadableItems(CaptionTrainSet(self.split(self.train_split), transform, self.max_words),
                                f"caption {self.train_split}")
        sampler = train_sampler(self, dataset)
        return self._loader(dataset, self.batch_size, sampler, train=True)

    def eval_dataloader(self, name: str) -> DataLoader:
        dataset = CaptionImages(self.split(name), self.image_size)
        return self._loader(dataset, self.eval_batch_size, ShardSampler(len(dataset), *self._rank_world()),
                            train=False)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader(self.val_split)

    def test_dataloader(self) -> list[DataLoader]:
        return [self.eval_dataloader(name) for name in self.test_splits]
