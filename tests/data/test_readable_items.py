"""Training sets never yield None: an unreadable item is replaced (reproducibly) by a readable one, so every
training batch is full and no rank is left without a loss; a split that is mostly unreadable is an error."""

import pytest
import torch

from xvlm_lit.data.tasks.datamodule import TaskDataModule
from xvlm_lit.data.tasks.readable import ReadableItems, UnreadableDataError

from .test_task_data import write_folder


class Holes(torch.utils.data.Dataset):
    """Items 0..n-1; those in ``broken`` are None (unreadable), and every read is recorded."""

    def __init__(self, n: int, broken: set[int]) -> None:
        self.n, self.broken, self.reads = n, broken, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.reads.append(i)
        return None if i in self.broken else i


def test_readable_items_pass_through_untouched():
    inner = Holes(10, {3})
    ds = ReadableItems(inner, "toy")
    assert [ds[i] for i in (0, 1, 2, 4, 9)] == [0, 1, 2, 4, 9]
    assert inner.reads == [0, 1, 2, 4, 9] and len(ds) == 10


def test_unreadable_item_is_replaced_by_a_readable_one_reproducibly():
    broken = {0, 1, 2, 3, 4}  # one image with five captions: its neighbours are broken too
    ds = ReadableItems(Holes(50, broken), "toy")
    subs = [ds[i] for i in sorted(broken)]
    assert all(s is not None and s not in broken for s in subs)
    assert subs == [ReadableItems(Holes(50, broken), "toy")[i] for i in sorted(broken)]  # same draw every time
    assert len(set(subs)) > 1  # not all five slots handed to one item


def test_mostly_unreadable_split_is_an_error_naming_it():
    inner = Holes(40, set(range(40)))
    with pytest.raises(UnreadableDataError, match=r"retrieval train: item 7 and 15 items .* all unreadable"):
        ReadableItems(inner, "retrieval train")[7]
    assert len(inner.reads) == 16


def test_wrapped_set_keeps_its_attributes():
    inner = Holes(3, set())
    inner.skips = "counter"
    assert ReadableItems(inner, "toy").skips == "counter"


def test_task_training_batches_are_full_despite_unreadable_images(tmp_path):
    good = [{"image": "a.jpg", "image_id": f"t/{i}", "captions": [f"red box {i}"]} for i in range(6)]
    bad = [{"image": "broken.jpg", "image_id": "t/b", "captions": ["x", "y", "z"]},
           {"image": "missing.jpg", "image_id": "t/m", "captions": ["w"]}]
    root = write_folder(tmp_path / "r", "retrieval", bad + good, split="train")
    dm = TaskDataModule("retrieval", str(root), image_size=32, batch_size=5, num_workers=0, randaugment=False)
    torch.manual_seed(0)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == 2 and all(b is not None for b in batches)
    assert [b.images.shape[0] for b in batches] == [5, 5]  # 10 items, 4 unreadable, all slots filled
    assert loader.dataset.skips.totals["corrupt_image"] >= 3 and loader.dataset.skips.totals["missing_image"] >= 1
