"""Raw sample readers: which shards (or folder samples) a reader visits, in which order, and their bytes.

A *reader* is one (rank, data worker) pair: ``slot = rank * num_workers + worker`` of ``n_slots``.
  - partitioned (default): pass ``p`` of epoch ``e`` permutes the units with a generator seeded by
    ``(seed, tag, e, p)`` only (the same permutation on every rank) and reader ``slot`` takes ``perm[slot::n_slots]``:
    within a pass the readers' samples are disjoint; passes repeat forever.
  - resampled: ``webdataset.ResampledShards`` with a deterministic seed of ``(seed, tag, epoch, slot)``.
Raw samples are ``{"__key__": str, ext: bytes, ...}`` dicts (webdataset's tar grouping); tar-level failures are
counted as ``broken_tar`` through the reader's :class:`~xvlm_lit.data.skips.SkipCounter` and never raise.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import webdataset as wds
from webdataset.tariterators import tarfile_samples

from xvlm_lit.data.skips import SkipCounter
from xvlm_lit.data.sources import SourceSpec

Raw = dict[str, Any]


def make_rng(*parts: int) -> np.random.Generator:
    """A numpy generator seeded by a tuple of non-negative ints."""
    return np.random.default_rng([int(p) & 0xFFFFFFFFFFFF for p in parts])


def partitioned_units(n_units: int, slot: int, n_slots: int, seed: int, tag: int, epoch: int) -> Iterator[int]:
    """Endless unit indices for reader ``slot``: passes of rank-independent permutations, split round-robin."""
    for p in itertools.count():
        perm = make_rng(seed, tag, epoch, p).permutation(n_units)
        mine = perm[slot::n_slots]
        if len(mine) == 0:
            raise ValueError(f"reader {slot} of {n_slots} has no unit out of {n_units}")
        yield from (int(i) for i in mine)


def resampled_urls(urls: list[str], seed: int, tag: int, epoch: int, slot: int) -> Iterator[str]:
    """Endless urls drawn with replacement by ``webdataset.ResampledShards`` (deterministic per reader)."""
    shards = wds.ResampledShards(urls, seed=int(make_rng(seed, tag, epoch).integers(2**31)),
                                 worker_seed=lambda: slot, deterministic=True)
    for item in shards:
        yield item["url"]


def read_tar(url: str, counter: SkipCounter) -> Iterator[Raw]:
    """Samples of one tar in order; tar-level errors skip what they break and count once per shard read
    (``broken_tar``, when the shard is finished)."""
    errors: list[BaseException] = []

    def handler(exn: BaseException) -> bool:
        errors.append(exn)
        return True

    for raw in tarfile_samples([{"url": url}], handler=handler):
        raw.pop("__url__", None)
        raw.pop("__local_path__", None)
        yield raw
    if errors:
        counter.skip("broken_tar", f"{url}: {len(errors)} tar error(s), first {type(errors[0]).__name__}: "
                                   f"{errors[0]}")


def read_folder_sample(spec: SourceSpec, index: int, counter: SkipCounter) -> Iterator[Raw]:
    """The one sample ``index`` of an unpacked folder as a raw dict (zero samples if its files cannot be read)."""
    sample = spec.folder[index]
    raw: Raw = {"__key__": sample.key}
    try:
        for ext, path in sample.files:
            with open(path, "rb") as fh:
                raw[ext] = fh.read()
    except OSError as exn:
        counter.skip("sample_error", f"{spec.name}/{sample.key}: {exn}")
        return
    yield raw


def read_unit(spec: SourceSpec, unit: int | str, counter: SkipCounter) -> Iterator[Raw]:
    """Samples of one unit: a shard url (or its index) or a folder sample index."""
    if spec.folder is not None:
        return read_folder_sample(spec, int(unit), counter)
    url = unit if isinstance(unit, str) else spec.urls[unit]
    return read_tar(url, counter)


def endless_raw(spec: SourceSpec, units: Iterable[int | str], counter: SkipCounter) -> Iterator[Raw]:
    """Read ``units`` one after another; raise once ``2 * units + 8`` units in a row gave no sample at all."""
    limit, streak = 2 * spec.units + 8, 0
    for unit in units:
        n = 0
        for raw in read_unit(spec, unit, counter):
            n += 1
            yield raw
        streak = 0 if n else streak + 1
        if streak >= limit:
            raise RuntimeError(f"source '{spec.name}': {streak} shards/samples in a row yielded nothing; "
                               f"skips so far: {dict(counter.totals)}")


def shuffled(items: Iterator[Raw], bufsize: int, rng: np.random.Generator) -> Iterator[Raw]:
    """Reservoir shuffle with a buffer of ``bufsize`` raw samples (identity for ``bufsize <= 1``)."""
    if bufsize <= 1:
        yield from items
        return
    buf: list[Raw] = []
    for item in items:
        if len(buf) < bufsize:
            buf.append(item)
            continue
        k = int(rng.integers(bufsize))
        yield buf[k]
        buf[k] = item
    order = rng.permutation(len(buf))
    yield from (buf[int(k)] for k in order)


def train_reader(spec: SourceSpec, *, slot: int, n_slots: int, seed: int, tag: int, epoch: int, resampled: bool,
                 shuffle_buffer: int, counter: SkipCounter) -> Iterator[Raw]:
    """The endless, shuffled raw-sample stream of one source for one reader."""
    if spec.folder is None and resampled:
        units: Iterable[int | str] = resampled_urls(spec.urls, seed, tag, epoch, slot)
    else:
        units = partitioned_units(spec.units, slot, n_slots, seed, tag, epoch)
    rng = make_rng(seed, tag, epoch, slot, 7)
    return shuffled(endless_raw(spec, units, counter), shuffle_buffer, rng)


def ordered_reader(specs: Iterable[SourceSpec], counter: SkipCounter) -> Iterator[tuple[SourceSpec, Raw]]:
    """Every raw sample of ``specs`` exactly once, in config / shard / archive order."""
    for spec in specs:
        for unit in range(spec.units):
            for raw in read_unit(spec, unit, counter):
                yield spec, raw
