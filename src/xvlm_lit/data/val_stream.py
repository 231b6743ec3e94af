"""The validation stream: every sample read exactly once, in order, split across ranks without duplicates.

Raw sample ``i`` (config / shard / archive order over all validation sources) belongs to rank ``i % world_size``;
a rank's ``j``-th sample goes to slot ``j % batch_size`` of its batch ``j // batch_size``, and batch ``b`` is built
by data worker ``b % num_workers`` (the DataLoader's round-robin then returns the batches in order). Every rank
yields the same number of batches, ``ceil(ceil(N / world_size) / batch_size)``, each with exactly ``batch_size``
image-text slots (unused or skipped slots are padding with ``valid=False``), because the contrastive loss gathers
equal-sized batches from every rank.

The optional region batch of a validation step holds the region texts of that step's images (eval transform:
no crop, whole-image caption first, then regions and objects in record order, at most ``max_regions`` per image),
from at most ``region_images`` images and padded / cut to exactly ``region_batch_size`` slots. MLM masks are seeded
per text, so the validation loss does not depend on batching or world size.
"""

from __future__ import annotations

import math
import tarfile
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import base_plus_ext

from xvlm_lit.data.collate import TextEncoder, collate_itc, collate_region, text_rngs
from xvlm_lit.data.readers import Raw, ordered_reader, read_unit
from xvlm_lit.data.samples import RegionItem, SampleMaker
from xvlm_lit.data.skips import SkipCounter
from xvlm_lit.data.sources import SourceSpec, is_remote
from xvlm_lit.data.streams import StreamSettings, cached_tokenizer

Slot = tuple[SourceSpec, Raw] | None


def count_tar_samples(url: str, counter: SkipCounter) -> int:
    """Samples (runs of members sharing a key) in a tar; a local file is scanned by its headers only."""
    if is_remote(url):
        return sum(1 for _ in read_unit(SourceSpec("count", [url]), url, counter))
    n, prev = 0, None
    try:
        with tarfile.open(url) as tar:
            for member in tar:
                prefix, _ = base_plus_ext(member.name) if member.isreg() else (None, None)
                if prefix is not None and prefix != prev:
                    n, prev = n + 1, prefix
    except (tarfile.TarError, OSError, EOFError) as exn:
        counter.skip("broken_tar", f"{url}: {exn}")
    return n


def count_samples(sources: Sequence[SourceSpec], counter: SkipCounter | None = None) -> int:
    """Number of raw samples of ``sources`` (an upper bound of what the readers yield)."""
    counter = counter or SkipCounter("count")
    return sum(s.units if s.folder is not None else sum(count_tar_samples(u, counter) for u in s.urls)
               for s in sources)


class ValStream(IterableDataset):
    """Deterministic validation step batches ``{"itc": VLBatch, "region": VLBatch | None, "skipped": {...}}``.

    Args:
        sources: validation sources (read in order).
        settings: shared settings; ``batch_size`` is the image-text slots per batch.
        rank, world_size: this rank and the number of ranks.
        total: number of raw samples (counted from the shards when None).
    """

    def __init__(self, sources: Sequence[SourceSpec], settings: StreamSettings, rank: int = 0, world_size: int = 1,
                 total: int | None = None) -> None:
        super().__init__()
        self.sources, self.settings = list(sources), settings
        self.rank, self.world_size = rank, max(1, world_size)
        self.total = count_samples(self.sources) if total is None else int(total)
        self.with_region = any("region" in s.streams for s in self.sources)

    def __len__(self) -> int:
        per_rank = math.ceil(self.total / self.world_size)
        return math.ceil(per_rank / self.settings.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.iterate(worker, workers)

    def _assigned(self, worker: int, workers: int, reader_counter: SkipCounter) -> Iterator[tuple[int, int, Slot]]:
        """(batch, slot, sample) for this rank's samples of the batches this worker builds."""
        b_size = self.settings.batch_size
        for i, (spec, raw) in enumerate(ordered_reader(self.sources, reader_counter)):
            if i % self.world_size != self.rank:
                continue
            b, pos = divmod(i // self.world_size, b_size)
            if b % workers == worker:
                yield b, pos, (spec, raw)

    def iterate(self, worker: int = 0, workers: int = 1) -> Iterator[dict[str, Any]]:
        """The batches ``worker, worker + workers, ...`` of this rank, in order."""
        counter = SkipCounter(f"val rank {self.rank} worker {worker}")
        # every reader sees the tar-level problems of all samples: only one of them reports those
        reader_counter = counter if self.rank == 0 and worker == 0 else SkipCounter("val reader")
        maker = SampleMaker(self.settings.image_size, self.settings.max_words, train=False, counter=counter)
        cfg = self.settings
        encoder = TextEncoder(cached_tokenizer(cfg.tokenizer_path), cfg.max_tokens, cfg.max_masks, cfg.mask_prob)
        n_batches, next_b = len(self), worker
        slots: dict[int, list[Slot]] = {}
        for b, pos, sample in self._assigned(worker, workers, reader_counter):
            if b >= n_batches:
                counter.skip("sample_error", f"validation sample beyond the counted {self.total} samples")
                continue
            while next_b < b:
                yield self._build(slots.pop(next_b, None), maker, encoder, counter)
                next_b += workers
            slots.setdefault(b, [None] * cfg.batch_size)[pos] = sample
        while next_b < n_batches:
            yield self._build(slots.pop(next_b, None), maker, encoder, counter)
            next_b += workers

    def _build(self, slots: list[Slot] | None, maker: SampleMaker, encoder: TextEncoder,
               counter: SkipCounter) -> dict[str, Any]:
        cfg = self.settings
        pairs = [maker.pair(s[1], s[0], "itc" in s[0].streams, self.with_region and "region" in s[0].streams,
                            cfg.max_regions) if s is not None else (None, None)
                 for s in (slots or [None] * cfg.batch_size)]
        items = [p[0] for p in pairs]
        rng_ids = [it.idx if it is not None else -1 - k for k, it in enumerate(items)]
        itc = collate_itc(items, encoder, text_rngs(cfg.seed, rng_ids), cfg.image_size)
        region = self._region([p[1] for p in pairs if p[1] is not None], encoder) if self.with_region else None
        return {"itc": itc, "region": region, "skipped": counter.drain()}

    def _region(self, candidates: list[RegionItem], encoder: TextEncoder):
        """The first region items up to ``region_images`` images / ``region_batch_size`` texts, padded."""
        cfg = self.settings
        items: list[RegionItem] = []
        n_texts = 0
        for item in candidates:
            if len(items) >= cfg.region_images or n_texts >= cfg.region_batch_size:
                break
            items.append(item)
            n_texts += len(item.texts)
        ids = [t.idx for it in items for t in it.texts][: cfg.region_batch_size]
        ids += [-1 - k for k in range(cfg.region_batch_size - len(ids))]
        return collate_region(items, cfg.region_batch_size, encoder, text_rngs(cfg.seed + 1, ids), cfg.image_size,
                              cfg.grid_size)
