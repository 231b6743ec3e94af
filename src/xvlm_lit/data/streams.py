"""The training stream: an IterableDataset whose workers each yield whole step batches.

Each item is ``{"itc": VLBatch, "region": VLBatch | None, "skipped": {reason: n}}`` for one global training step
(see :mod:`xvlm_lit.data.schedule` for which worker builds which step and when a step has a region batch). Use it
with ``DataLoader(batch_size=None)``; ``len()`` is ``epoch_steps``.

Randomness: every reader / mixer / augmentation / masking generator is seeded from ``(seed, rank, worker, epoch)``
and a per-purpose tag; shard orders depend on ``(seed, source, epoch)`` only, so ranks read disjoint shards.

Resume: ``set_start(n)`` makes the next pass begin at the epoch's ``n``-th step batch with exactly the batches an
uninterrupted pass would give from there. Each worker replays (builds and drops) its own earlier step batches, since
its generators and shuffle buffers are sequential, and the workers are rotated so that the DataLoader's round-robin
(which always begins at worker 0) hands out step ``n`` first.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from xvlm_lit.data.collate import TextEncoder, collate_itc, collate_region
from xvlm_lit.data.decode import stable_id
from xvlm_lit.data.readers import Raw, make_rng, train_reader
from xvlm_lit.data.samples import RegionItem, SampleMaker
from xvlm_lit.data.schedule import region_schedule, worker_steps
from xvlm_lit.data.skips import SkipCounter
from xvlm_lit.data.sources import SourceSpec, check_reader_count, stream_sources
from xvlm_lit.data.tokenizer import load_tokenizer

MAX_CONSECUTIVE_SKIPS = 1000  # a source that fails this often in a row is broken or misconfigured: raise
MAX_DUPLICATE_IMAGES = 64  # region batch: stop adding images after this many draws of images already in the batch


@dataclass(frozen=True)
class StreamSettings:
    """Everything a worker needs besides the sources (plain values, picklable)."""

    image_size: int = 224
    patch_size: int = 32
    grid: int | None = None
    tokenizer_path: str | None = None
    max_tokens: int = 40
    max_words: int = 30
    max_masks: int = 8
    mask_prob: float = 0.25
    batch_size: int = 128
    region_batch_size: int = 128
    region_images: int = 48
    max_regions: int = 5
    region_prob: float = 0.5
    seed: int = 42
    epoch_steps: int = 1000
    resampled: bool = False
    shuffle_buffer: int = 500
    crop_scale: tuple[float, float] = (0.2, 1.0)
    randaugment: bool = True

    @property
    def grid_size(self) -> int:
        """Patches per side: ``grid``, else ``R / patch_size``."""
        return self.grid if self.grid is not None else self.image_size // self.patch_size


@functools.lru_cache(maxsize=4)
def cached_tokenizer(path: str | None):
    """One tokenizer per process and path."""
    return load_tokenizer(path)


class MixedSource:
    """Draws items from several sources with probabilities ``weights``.

    A failed sample (the maker returned None) is retried on the *same* source, so the mix of produced items follows
    the weights whatever each source's failure rate; ``MAX_CONSECUTIVE_SKIPS`` failures in a row raise.
    """

    def __init__(self, specs: Sequence[SourceSpec], weights: Sequence[float],
                 open_stream: Callable[[SourceSpec], Iterator[Raw]], rng: np.random.Generator,
                 counter: SkipCounter) -> None:
        self.specs, self.rng, self.counter = list(specs), rng, counter
        self.cum = np.cumsum(np.asarray(weights, dtype=np.float64))
        self.open_stream = open_stream
        self.streams: dict[int, Iterator[Raw]] = {}

    def choose(self) -> int:
        """Index of the source of the next item."""
        return min(int(np.searchsorted(self.cum, self.rng.random() * self.cum[-1], side="right")),
                   len(self.specs) - 1)

    def next(self, make: Callable[[Raw, SourceSpec], Any]) -> Any:
        """The next produced item of a weighted-drawn source."""
        i = self.choose()
        spec = self.specs[i]
        if i not in self.streams:
            self.streams[i] = self.open_stream(spec)
        for _ in range(MAX_CONSECUTIVE_SKIPS):
            item = make(next(self.streams[i]), spec)
            if item is not None:
                return item
        raise RuntimeError(f"source '{spec.name}': {MAX_CONSECUTIVE_SKIPS} samples in a row were skipped; "
                           f"skip counts in this worker: {dict(self.counter.totals)}")


class _Worker:
    """The state of one worker (one reader slot) for one epoch."""

    def __init__(self, sources: Sequence[SourceSpec], cfg: StreamSettings, rank: int, world_size: int,
                 worker: int, num_workers: int, epoch: int) -> None:
        self.cfg, self.rank, self.epoch = cfg, rank, epoch
        self.slot, self.n_slots = rank * num_workers + worker, world_size * num_workers
        self.counter = SkipCounter(f"rank {rank} worker {worker}")
        self.maker = SampleMaker(cfg.image_size, cfg.max_words, train=True, counter=self.counter,
                                 crop_scale=cfg.crop_scale, randaugment=cfg.randaugment)
        self.encoder = TextEncoder(cached_tokenizer(cfg.tokenizer_path), cfg.max_tokens, cfg.max_masks, cfg.mask_prob)
        base = (cfg.seed, rank, worker, epoch)
        self.aug_rng = make_rng(*base, 1)
        self.mlm_rng = random.Random("/".join(map(str, (*base, "mlm"))))
        self.mixes = {name: self._mix(sources, name, k) for k, name in enumerate(("itc", "region"))}

    def _mix(self, sources: Sequence[SourceSpec], stream: str, code: int) -> MixedSource | None:
        specs, weights = stream_sources(sources, stream)
        if not specs:
            return None
        rng = make_rng(self.cfg.seed, self.rank, self.slot, self.epoch, 100 + code)
        return MixedSource(specs, weights, functools.partial(self._open, stream=stream), rng, self.counter)

    def _open(self, spec: SourceSpec, stream: str) -> Iterator[Raw]:
        cfg = self.cfg
        resampled = cfg.resampled if spec.resampled is None else spec.resampled
        return train_reader(spec, slot=self.slot, n_slots=self.n_slots, seed=cfg.seed,
                            tag=stable_id(f"{stream}/{spec.name}") & 0xFFFFFFFF, epoch=self.epoch,
                            resampled=resampled, shuffle_buffer=cfg.shuffle_buffer, counter=self.counter)

    def itc_batch(self):
        """``batch_size`` image-text pairs."""
        mix = self.mixes["itc"]
        items = [mix.next(lambda raw, spec: self.maker.itc(raw, spec, self.aug_rng))
                 for _ in range(self.cfg.batch_size)]
        return collate_itc(items, self.encoder, self.mlm_rng, self.cfg.image_size)

    def region_batch(self):
        """``region_batch_size`` region-text slots from at most ``region_images`` distinct images."""
        cfg, mix = self.cfg, self.mixes["region"]
        make = lambda raw, spec: self.maker.region(raw, spec, self.aug_rng, cfg.max_regions)
        items: list[RegionItem] = []
        seen: set[str] = set()
        n_texts = duplicates = 0
        while len(items) < cfg.region_images and n_texts < cfg.region_batch_size:
            item = mix.next(make)
            if item.image_id in seen:
                duplicates += 1
                if duplicates > MAX_DUPLICATE_IMAGES:
                    break
                continue
            seen.add(item.image_id)
            items.append(item)
            n_texts += len(item.texts)
        return collate_region(items, cfg.region_batch_size, self.encoder, self.mlm_rng, cfg.image_size,
                              cfg.grid_size)

    def step(self, step: int) -> dict[str, Any]:
        """The step batch of global ``step``."""
        itc = self.itc_batch() if self.mixes["itc"] is not None else None
        wants_region = self.mixes["region"] is not None and region_schedule(self.cfg.seed, step,
                                                                             self.cfg.region_prob)
        region = self.region_batch() if wants_region else None
        return {"itc": itc, "region": region, "skipped": self.counter.drain()}


class PretrainStream(IterableDataset):
    """Endless-per-epoch step batches for one rank (``len() == epoch_steps`` steps per epoch over all workers).

    Args:
        sources: validated sources (see :func:`xvlm_lit.data.sources.make_sources`).
        settings: batch sizes, text and image settings, seed, ``epoch_steps``.
        rank, world_size: this process's rank and the number of ranks.
    """

    def __init__(self, sources: Sequence[SourceSpec], settings: StreamSettings, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__()
        if not stream_sources(sources, "itc")[0] and not stream_sources(sources, "region")[0]:
            raise ValueError("no training source feeds the itc or region stream")
        self.sources, self.settings = list(sources), settings
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0  # step batches of the epoch already consumed: the next pass begins there (resume)
        self._calls = 0  # epochs begun by this copy inside a (persistent) worker

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (main process, before the DataLoader starts its workers)."""
        self.epoch = int(epoch)

    def set_start(self, start: int) -> None:
        """Begin the next pass at the epoch's ``start``-th step batch (main process, before the workers start)."""
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.start = int(start)

    def __len__(self) -> int:
        return self.settings.epoch_steps

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        if info is None:
            return self.iterate(0, 1, self.epoch, self.start)
        epoch = self.epoch + self._calls  # persistent workers never see set_epoch: count their epochs here
        start = self.start if self._calls == 0 else 0  # a persistent worker's later epochs start at 0
        self._calls += 1
        return self.iterate(info.id, info.num_workers, epoch, start)

    def iterate(self, worker: int, num_workers: int, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]:
        """The step batches worker ``worker`` of ``num_workers`` hands out in ``epoch`` from its ``start``-th step
        batch on (also used by tests). With ``start > 0`` the worker acts as worker ``(worker + start) % W`` of an
        uninterrupted pass and replays that worker's step batches before ``start`` without yielding them."""
        check_reader_count(self.sources, self.world_size, num_workers, self.settings.resampled)
        epoch_steps = self.settings.epoch_steps
        if start >= epoch_steps:
            return
        owner = (worker + start) % max(1, num_workers)
        state = _Worker(self.sources, self.settings, self.rank, self.world_size, owner, num_workers, epoch)
        first = epoch * epoch_steps + start
        for step in worker_steps(epoch, epoch_steps, owner, num_workers):
            batch = state.step(step)
            if step >= first:
                yield batch
