"""VQA data: a ``vqa`` task folder -> training batches (questions with weighted answers) and evaluation batches.

The folder (``python -m data_prep.vqa``, ``python -m data_prep.shapes_vqa``): ``manifest.json`` (``{"task": "vqa",
"image_root", ...}``), ``<split>.jsonl`` with one question per line ``{"image", "image_id", "width", "height",
"question_id", "question", "answers": [str] (10 for VQA, 1 for VG, none for test), "answer_weights": {answer:
weight}, "dataset": "vqa"|"vg"}`` and ``answer_list.json`` (the candidate answers the ranking protocol chooses
among).

As the reference (``dataset/vqa_dataset.py``, ``VQA.py``):

- question text ``[CLS] question`` (no [SEP]), cleaned as captions (at most ``max_words`` words for training, 50
  for evaluation), truncated to ``max_tokens`` (training; the reference's 40) or ``eval_max_tokens``;
- answer text ``[CLS] answer [SEP]``: the decoder reads ``[CLS]`` as its start token and learns ``answer [SEP]``;
- a training item is one question with all its distinct answers and their weights (``answer_weights``, else
  count / number of answers, 0.5 for a VG answer); the batch flattens the answers and keeps, per answer, the index
  of its question (the reference's ``k``);
- training augmentation: RandomResizedCrop(R, scale 0.5-1, bicubic) + RandAugment(2, 7), and a horizontal flip
  (p=0.5) only when neither "left" nor "right" occurs in the question or any answer (as substrings, like the
  reference: "leftmost" blocks the flip too); evaluation: the plain bicubic resize.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from PIL import ImageOps
from torch.utils.data import DataLoader, Dataset
from transformers import PreTrainedTokenizerBase

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.data.images import image_skip_reason
from xvlm_lit.data.skips import SkipCounter
from xvlm_lit.data.tasks.annotations import TaskDataError, TaskSplit, open_image, read_split
from xvlm_lit.data.tasks.readable import ReadableItems
from xvlm_lit.data.tasks.retrieval import item_rng
from xvlm_lit.data.tasks.samplers import ShardSampler, task_loader, train_sampler
from xvlm_lit.data.text import clean_caption
from xvlm_lit.data.tokenizer import encode_captions, load_tokenizer, pad_ids
from xvlm_lit.data.transforms import ImageTextTransform

log = logging.getLogger("xvlm_lit.data")

TASK = "vqa"
ANSWER_LIST = "answer_list.json"
#: weight of a Visual Genome answer (one answer per question), as the reference
VG_WEIGHT = 0.5
#: the reference does not limit test questions to the training word count
EVAL_MAX_WORDS = 50


# ---------------------------------------------------------------------------------------------------- records
def _check(record: Any) -> str | None:
    """The skip reason of a malformed line, or None."""
    if not isinstance(record, dict) or not isinstance(record.get("image"), str):
        return "bad_json"
    qid = record.get("question_id")
    if isinstance(qid, bool) or not (isinstance(qid, int) or isinstance(qid, str) and qid.strip()):
        return "bad_json"
    if not isinstance(record.get("question"), str):
        return "bad_json"
    answers = record.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        return "bad_json"
    weights = record.get("answer_weights")
    if weights is not None and not (isinstance(weights, dict) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in weights.values())):
        return "bad_json"
    return None


def read_vqa_split(root: str | os.PathLike, split: str, limit: int | None = None) -> TaskSplit:
    """The usable records of ``<root>/<split>.jsonl`` (at most ``limit``; malformed lines skipped and counted)."""
    return read_split(root, split, TASK, limit, check=_check,
                      hint="convert with python -m data_prep.vqa or data_prep.shapes_vqa")


def read_answer_list(path: str | os.PathLike) -> list[str]:
    """The candidate answers (a JSON list of distinct non-empty strings)."""
    path = Path(path)
    if not path.is_file():
        raise TaskDataError(f"{path} not found: the VQA converter writes it next to the splits (python -m "
                            "data_prep.vqa ... --answer-list, or data_prep.shapes_vqa); set data.answer_list")
    try:
        answers = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise TaskDataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise TaskDataError(f"{path}: expected a non-empty JSON list of non-empty answer strings")
    if len(set(answers)) != len(answers):
        dup = sorted(a for a, n in Counter(answers).items() if n > 1)[:5]
        raise TaskDataError(f"{path}: answers repeat (first: {dup})")
    return answers


def weighted_answers(record: dict[str, Any]) -> dict[str, float]:
    """Each distinct answer with its weight: ``answer_weights`` when the line has them, else the reference's rule
    (count / number of answers; ``VG_WEIGHT`` for a VG answer). Answers of weight <= 0 are left out."""
    weights = record.get("answer_weights")
    if weights is None:
        answers = record.get("answers") or []
        if record.get("dataset") == "vg":
            weights = {a: VG_WEIGHT for a in answers}
        else:
            weights = {a: n / len(answers) for a, n in Counter(answers).items()}
    return {a: float(w) for a, w in weights.items() if a.strip() and w > 0}


def mentions_side(texts: Sequence[str]) -> bool:
    """True when "left" or "right" occurs (as a substring, any case) in any text: the reference's careful flip."""
    return any("left" in t.lower() or "right" in t.lower() for t in texts)


# ---------------------------------------------------------------------------------------------------- datasets
class VQATrainSet(Dataset):
    """One item per question with at least one weighted answer: ``{"image": [3, R, R], "question": str,
    "answers": [str], "weights": [float]}``, or None for an unreadable image (counted; the collate drops it)."""

    def __init__(self, split: TaskSplit, transform: ImageTextTransform, max_words: int = 30,
                 flip: bool = True) -> None:
        self.split, self.transform, self.flip = split, transform, flip
        self.skips = SkipCounter(f"{split.split} vqa")
        self.items: list[tuple[int, str, list[str], list[float]]] = []
        for i, record in enumerate(split.records):
            answers = weighted_answers(record)
            if not answers:
                self.skips.skip("no_answer", f"question {record['question_id']}")
                continue
            question = clean_caption(record["question"], max_words)
            if not question:
                self.skips.skip("empty_caption", f"question {record['question_id']}: {record['question'][:80]!r}")
                continue
            self.items.append((i, question, list(answers), list(answers.values())))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        i, question, answers, weights = self.items[index]
        path = self.split.image_path(self.split.records[i])
        try:
            img = open_image(path)
        except (OSError, ValueError) as err:
            self.skips.skip(image_skip_reason(err), str(err))
            return None
        rng = item_rng()
        if self.flip and rng.random() < 0.5 and not mentions_side([question, *answers]):
            img = ImageOps.mirror(img)
        image, _, _ = self.transform(img, [], rng)
        return {"image": image, "question": question, "answers": answers, "weights": weights}


class VQAEvalSet(Dataset):
    """Every question of a split, in order: ``{"image": [3, R, R], "question": str, "index": int, "ok": bool}``.
    An unreadable image gives a zero image with ``ok=False`` (counted): the question is still answered, since the
    evaluation server wants an answer for every question."""

    def __init__(self, split: TaskSplit, image_size: int, max_words: int = EVAL_MAX_WORDS) -> None:
        self.split, self.image_size = split, image_size
        self.transform = ImageTextTransform(image_size, train=False)
        self.skips = SkipCounter(f"{split.split} vqa eval")
        self.questions = [clean_caption(r["question"], max_words) for r in split.records]

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
        return {"image": image, "question": self.questions[index], "index": index, "ok": ok}


# ---------------------------------------------------------------------------------------------------- batches
@dataclass
class VQABatch(VLBatch):
    """A training batch: ``B`` images and questions (``text_ids``/``text_mask``, ``[CLS] question``) and ``A``
    answers over all questions.

    Attributes:
        answer_ids: ``[A, La]`` ``[CLS] answer [SEP]`` padded with 0; answer_mask ``[A, La]``.
        answer_weights: ``[A]`` float; answer_question ``[A]`` the question (row of ``text_ids``) of each answer.
    """

    answer_ids: torch.Tensor | None = None
    answer_mask: torch.Tensor | None = None
    answer_weights: torch.Tensor | None = None
    answer_question: torch.Tensor | None = None


def tokenize_answers(tokenizer: PreTrainedTokenizerBase, answers: Sequence[str],
                     max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[CLS] answer [SEP]`` ids and mask ``[A, La]`` padded to the longest (the reference's answer format)."""
    ids = encode_captions(tokenizer, answers, max_tokens, add_sep=True, add_cls=True)
    return pad_ids(ids, max((len(i) for i in ids), default=2), pad_id=tokenizer.pad_token_id or 0)


class VQACollate:
    """Items -> :class:`VQABatch` (``train``) or an evaluation dict ``{"images", "text_ids", "text_mask",
    "index", "ok"}``; None items are dropped (a batch with none left is None)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_tokens: int, max_answer_tokens: int,
                 train: bool) -> None:
        self.tokenizer, self.max_tokens, self.max_answer_tokens = tokenizer, max_tokens, max_answer_tokens
        self.train = train

    def questions(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = encode_captions(self.tokenizer, texts, self.max_tokens)
        return pad_ids(ids, max((len(i) for i in ids), default=1), pad_id=self.tokenizer.pad_token_id or 0)

    def __call__(self, items: Sequence[dict[str, Any] | None]) -> VQABatch | dict[str, Any] | None:
        items = [it for it in items if it is not None]
        if not items:
            return None
        images = torch.stack([it["image"] for it in items])
        ids, mask = self.questions([it["question"] for it in items])
        if not self.train:
            return {"images": images, "text_ids": ids, "text_mask": mask,
                    "index": torch.tensor([it["index"] for it in items]),
                    "ok": torch.tensor([it["ok"] for it in items])}
        answers = [a for it in items for a in it["answers"]]
        a_ids, a_mask = tokenize_answers(self.tokenizer, answers, self.max_answer_tokens)
        owner = torch.tensor([q for q, it in enumerate(items) for _ in it["answers"]])
        weights = torch.tensor([w for it in items for w in it["weights"]], dtype=torch.float32)
        return VQABatch(images=images, text_ids=ids, text_mask=mask, answer_ids=a_ids, answer_mask=a_mask,
                        answer_weights=weights, answer_question=owner)


# ---------------------------------------------------------------------------------------------------- datamodule
class VQATaskDataModule(L.LightningDataModule):
    """VQA fine-tuning data (mirrors :class:`~xvlm_lit.data.tasks.datamodule.TaskDataModule`).

    Args:
        root: the converter's output folder.
        train_split: a split name or a list of them, concatenated (the reference trains on VQA train + val + VG
            QA; ``data_prep.vqa`` puts VG QA into ``train``).
        val_split, test_splits: evaluated splits (exactly once over all ranks); test splits without answers
            (VQA test-dev/test) give results files but no accuracy.
        answer_list: the candidate answers file; None = ``<root>/answer_list.json``.
        image_size, batch_size, eval_batch_size, tokenizer_path, num_workers: as TaskDataModule.
        max_tokens: training question length in tokens (``[CLS]`` included); max_words: training question words.
        eval_max_tokens: evaluation question length (the reference does not truncate test questions).
        max_answer_tokens: answer length in tokens (``[CLS]`` and ``[SEP]`` included).
        crop_scale, randaugment, flip: training augmentation.
        limit: at most this many questions per split; val_limit: at most this many for the val split (VQA v2's
            val split has 214K questions).
    """

    def __init__(self, root: str, image_size: int = 384, batch_size: int = 24, eval_batch_size: int = 32,
                 train_split: str | Sequence[str] = "train", val_split: str = "val",
                 test_splits: Sequence[str] = ("test",), answer_list: str | None = None,
                 tokenizer_path: str | None = None, max_tokens: int = 40, max_words: int = 30,
                 eval_max_tokens: int = 64, max_answer_tokens: int = 16, crop_scale: Sequence[float] = (0.5, 1.0),
                 randaugment: bool = True, flip: bool = True, num_workers: int = 4, limit: int | None = None,
                 val_limit: int | None = None) -> None:
        super().__init__()
        self.root = os.path.expanduser(str(root))
        self.image_size, self.batch_size, self.eval_batch_size = image_size, batch_size, eval_batch_size
        self.train_splits = [train_split] if isinstance(train_split, str) else list(train_split)
        self.val_split, self.test_splits = val_split, list(test_splits)
        self.answer_list_path = os.path.expanduser(str(answer_list)) if answer_list else str(
            Path(self.root) / ANSWER_LIST)
        self.tokenizer_path, self.max_tokens, self.max_words = tokenizer_path, max_tokens, max_words
        self.eval_max_tokens, self.max_answer_tokens = eval_max_tokens, max_answer_tokens
        self.crop_scale, self.randaugment, self.flip = tuple(crop_scale), randaugment, flip
        self.num_workers, self.limit, self.val_limit = num_workers, limit, val_limit
        self._tokenizer = None
        self._splits: dict[str, TaskSplit] = {}
        self._answers: list[str] | None = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_path)
        return self._tokenizer

    def split(self, name: str) -> TaskSplit:
        if name not in self._splits:
            limit = self.limit
            if name == self.val_split and self.val_limit is not None:
                limit = self.val_limit if limit is None else min(limit, self.val_limit)
            self._splits[name] = read_vqa_split(self.root, name, limit)
        return self._splits[name]

    @property
    def answer_list(self) -> list[str]:
        if self._answers is None:
            self._answers = read_answer_list(self.answer_list_path)
        return self._answers

    def answer_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The answer list as decoder inputs: ids and mask ``[N, La]`` (``[CLS] answer [SEP]``)."""
        return tokenize_answers(self.tokenizer, self.answer_list, self.max_answer_tokens)

    def majority_answer(self) -> str | None:
        """The answer with the largest total weight over the training questions (the trivial baseline), or None
        when there is no training split here."""
        totals: Counter[str] = Counter()
        for name in self.train_splits:
            try:
                split = self.split(name)
            except TaskDataError as err:
                log.warning("no majority baseline: %s", err)
                return None
            for record in split.records:
                totals.update(weighted_answers(record))
        return max(totals, key=lambda a: (totals[a], a)) if totals else None

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, dataset: Dataset, train: bool, batch_size: int, sampler) -> DataLoader:
        length = self.max_tokens if train else max(self.max_tokens, self.eval_max_tokens)
        collate = VQACollate(self.tokenizer, length, self.max_answer_tokens, train)
        return task_loader(dataset, sampler, batch_size=batch_size, num_workers=self.num_workers,
                          collate_fn=collate, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataset(self) -> Dataset:
        transform = ImageTextTransform(self.image_size, train=True, scale=self.crop_scale, flip=False,
                                       randaugment=self.randaugment)
        parts = [VQATrainSet(self.split(name), transform, self.max_words, self.flip) for name in self.train_splits]
        return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)

    def eval_dataset(self, name: str) -> VQAEvalSet:
        return VQAEvalSet(self.split(name), self.image_size, max(self.max_words, EVAL_MAX_WORDS))

    def train_dataloader(self) -> DataLoader:
        dataset = ReadableItems(self.train_dataset(), f"vqa {'+'.join(self.train_splits)}")
        sampler = train_sampler(self, dataset)
        return self._loader(dataset, True, self.batch_size, sampler)

    def eval_dataloader(self, name: str) -> DataLoader:
        dataset = self.eval_dataset(name)
        return self._loader(dataset, False, self.eval_batch_size, ShardSampler(len(dataset), *self._rank_world()))

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader(self.val_split)

    def test_dataloader(self) -> list[DataLoader]:
        return [self.eval_dataloader(name) for name in self.test_splits]


#: the name the VQA configs use (``xvlm_lit.eval`` recognises task data modules by the ``TaskDataModule`` suffix)
VQADataModule = VQATaskDataModule
