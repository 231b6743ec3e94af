"""Task sampling: evaluation reads every sample exactly once over all ranks (no padding duplicates); training
follows a seeded order per epoch that a resumed run continues where it stopped."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

log = logging.getLogger(__name__)


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of ``range(n)``: the ranks' shards are disjoint and cover ``range(n)``.

    Unlike ``DistributedSampler`` nothing is repeated to even the shards out, so no sample is scored twice.
    """

    def __init__(self, n: int, rank: int = 0, world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world size {world}")
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


class TrainSampler(DistributedSampler):
    """Training order of a task: this rank's share of a permutation seeded by ``seed + epoch`` (DistributedSampler's
    rule; Lightning calls ``set_epoch``), the same on every run, so an interrupted epoch can continue where it
    stopped: ``set_start(n)`` makes the next pass skip its first ``n`` indices. With several ranks the last
    incomplete share is dropped, as DDP training needs equal step counts.

    Args:
        progress_fn: the number of this epoch's batches whose step has run (the trainer's count), or None outside a
            trainer; read by :class:`ResumableLoader` when Lightning saves a checkpoint.
    """

    def __init__(self, dataset: Sized, rank: int = 0, world: int = 1, seed: int = 0,
                 progress_fn: Callable[[], int | None] | None = None) -> None:
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed,  # type: ignore[arg-type]
                         drop_last=world > 1)
        self.progress_fn = progress_fn
        self._start = 0

    def set_start(self, n: int) -> None:
        self._start = int(n)

    def __iter__(self) -> Iterator[int]:
        order = list(super().__iter__())
        start, self._start = self._start, 0
        return iter(order[start:])


class ResumableLoader(DataLoader):
    """A training DataLoader over a :class:`TrainSampler` whose position Lightning keeps in step checkpoints
    (``state_dict``: epoch and batches consumed): after ``load_state_dict`` the interrupted epoch continues with
    the batches it had not reached, in the same order (random augmentations are drawn anew)."""

    sampler: TrainSampler

    def __init__(self, dataset: Any, sampler: TrainSampler, **kwargs: Any) -> None:
        super().__init__(dataset, sampler=sampler, **kwargs)
        self.handed_out = 0
        self._resume: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[Any]:
        epoch = int(self.sampler.epoch)
        start = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume = None
        self.sampler.set_start(start * int(self.batch_size or 1))
        self.handed_out = start
        for batch in super().__iter__():
            self.handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        consumed = self.sampler.progress_fn() if self.sampler.progress_fn is not None else None
        return {"epoch": int(self.sampler.epoch), "batches": int(self.handed_out if consumed is None else consumed),
                "batch_size": int(self.batch_size or 1), "length": len(self.sampler)}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        if int(state.get("batch_size", self.batch_size or 1)) != self.batch_size or \
                int(state.get("length", len(self.sampler))) != len(self.sampler):
            log.warning("resuming with another batch size or data length than the checkpoint's: the interrupted "
                        "epoch starts again from its first batch")
            return
        self._resume = (int(state["epoch"]), int(state["batches"]))


def task_loader(dataset: Any, sampler: Sampler, **kwargs: Any) -> DataLoader:
    """A :class:`ResumableLoader` for a :class:`TrainSampler`, else a plain DataLoader."""
    if isinstance(sampler, TrainSampler):
        return ResumableLoader(dataset, sampler, **kwargs)
    return DataLoader(dataset, sampler=sampler, **kwargs)


def train_sampler(datamodule: Any, dataset: Sized) -> TrainSampler:
    """The training sampler of a task datamodule: its trainer's rank and world, the run's seed
    (``torch.initial_seed()``, set by ``seed_everything``), the trainer's batch count of the epoch."""
    trainer = getattr(datamodule, "trainer", None)
    rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def progress() -> int | None:
        t = getattr(datamodule, "trainer", None)
        return None if t is None else int(t.fit_loop.epoch_loop.batch_progress.current.processed)

    return TrainSampler(dataset, rank, world, seed=torch.initial_seed() % 2**31, progress_fn=progress)
