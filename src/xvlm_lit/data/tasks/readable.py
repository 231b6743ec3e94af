"""Training items that are never None: an unreadable item is replaced by another readable one of the same set.

Task datasets return None for an item whose image cannot be read (counted by their ``SkipCounter``). In training a
batch of only such items would leave one rank without a loss: under DDP the other ranks would wait for it in the
contrastive all-gather and the gradient all-reduce. So training sets are wrapped: the substitute of item ``i`` is
drawn by a generator seeded with ``i`` (reproducible, independent of loader workers), so a broken image with
several captions does not simply hand its slot to its own next caption.
"""

from __future__ import annotations

import random
from typing import Any

from torch.utils.data import Dataset

MAX_TRIES = 16


class UnreadableDataError(RuntimeError):
    """Almost every item tried was unreadable: the data (or its image root) is wrong, not a few files."""


class ReadableItems(Dataset):
    """``dataset[i]``, or when that is None (unreadable, already counted by ``dataset``) a readable item drawn at
    random; after ``max_tries`` unreadable draws in a row an :class:`UnreadableDataError` names the set."""

    def __init__(self, dataset: Dataset, name: str, max_tries: int = MAX_TRIES) -> None:
        self.dataset, self.name, self.max_tries = dataset, name, int(max_tries)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        if item is not None:
            return item
        rng = random.Random(index)
        for _ in range(self.max_tries - 1):
            item = self.dataset[rng.randrange(len(self))]
            if item is not None:
                return item
        raise UnreadableDataError(
            f"{self.name}: item {index} and {self.max_tries - 1} items drawn to replace it are all unreadable; "
            "most of this split cannot be read: check the image folder given to the converter (data.root's "
            "images) and the skip warnings above")

    def __getattr__(self, name: str) -> Any:  # skips, split, ... of the wrapped set
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
