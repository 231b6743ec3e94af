"""``PretrainDataModule``: weighted multi-source pre-training data, one step batch per training step.

Each training (and validation) batch is a *step batch*::

    {"itc": VLBatch,              # batch_size image-text pairs (image_index None: text i <-> image i)
     "region": VLBatch | None,    # region_batch_size region-text slots (padding valid=False), None on image-only
                                  # steps; which steps carry one is the same on every rank (region_schedule)
     "skipped": {reason: n}}      # samples/texts skipped while building this batch (see data/skips.py); the task
                                  # should log them (e.g. as train/skipped/<reason>, reduce_fx="sum") and must
                                  # not pass this entry to the loss plugins

``skip_counts()`` returns this rank's totals seen so far by the training and validation loaders.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from xvlm_lit.data.skips import add_counts
from xvlm_lit.data.sources import SourceSpec, check_reader_count, make_sources
from xvlm_lit.data.streams import PretrainStream, StreamSettings
from xvlm_lit.data.val_stream import ValStream

STREAM_KEYS = ("itc", "region")
log = logging.getLogger(__name__)
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StepLoader(DataLoader):
    """A ``DataLoader(batch_size=None)`` over step batches that sets the dataset's epoch before every pass, adds up
    the ``skipped`` counters of the batches it hands out (``skip_totals``) and is resumable.

    Resumable: ``state_dict()`` records the epoch and how many of its step batches were consumed (Lightning saves
    it in the checkpoint's fit-loop state); after ``load_state_dict`` the next pass of that epoch starts right after
    them (the dataset's ``set_start``). The loader draws its workers' base seed from its own generator, never from
    torch's global one, so creating an iterator does not shift the training step's random stream.

    Args:
        dataset: a :class:`PretrainStream` or :class:`ValStream`.
        epoch_fn: returns the current epoch (e.g. the trainer's) or None; None counts this loader's passes.
        consumed_fn: returns how many step batches of the current epoch the consumer has finished (the trainer's
            count); None = the batches this loader handed out (a prefetching consumer holds some unfinished).
        **kwargs: other DataLoader arguments (``num_workers``, ``pin_memory``, ...).
    """

    def __init__(self, dataset: Dataset, epoch_fn: Callable[[], int | None] | None = None,
                 consumed_fn: Callable[[], int | None] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("generator", torch.Generator())
        if kwargs.get("num_workers", 0) > 0:
            kwargs["worker_init_fn"] = functools.partial(_init_worker, then=kwargs.get("worker_init_fn"))
        super().__init__(dataset, batch_size=None, **kwargs)
        self.epoch_fn, self.consumed_fn = epoch_fn, consumed_fn
        self.passes = 0
        self.epoch = 0
        self.handed_out = 0  # step batches of ``epoch`` handed out, including those skipped on resume
        self._resume: tuple[int, int] | None = None
        self.skip_totals: Counter[str] = Counter()

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        self.epoch = self.passes if epoch is None else epoch
        start = self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0
        self._resume = None
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        if hasattr(self.dataset, "set_start"):
            self.dataset.set_start(start)
        elif start:
            raise RuntimeError(f"{type(self.dataset).__name__} cannot resume mid-epoch (no set_start)")
        self.passes += 1
        self.handed_out = start
        batches = super().__iter__()  # the workers copy the dataset (and its start) here
        if hasattr(self.dataset, "set_start"):
            self.dataset.set_start(0)
        for batch in batches:
            self.handed_out += 1
            add_counts(self.skip_totals, batch.get("skipped"))
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "batches"}``: the stream position; ``layout`` is what exactness also depends on."""
        consumed = self.consumed_fn() if self.consumed_fn is not None else None
        return {"epoch": int(self.epoch), "batches": int(self.handed_out if consumed is None else consumed),
                "layout": self._layout()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume the stream at ``state``'s position (applied by the next pass over ``state["epoch"]``)."""
        if state.get("layout") not in (None, self._layout()):
            log.warning("resuming with data layout %s, the checkpoint was written with %s: the stream continues "
                        "at the same step but not with the same samples", self._layout(), state["layout"])
        self._resume = (int(state["epoch"]), int(state["batches"]))

    def _layout(self) -> dict[str, int]:
        ds = self.dataset
        return {"num_workers": int(self.num_workers), "world_size": int(getattr(ds, "world_size", 1)),
                "epoch_steps": int(len(ds)) if hasattr(ds, "__len__") else -1}


def _init_worker(worker_id: int, then: Callable[[int], None] | None = None) -> None:
    """Data workers ignore preemption signals: a job-wide SIGTERM / SIGUSR1 must not kill them before the main
    process has reached the step boundary where it saves (a dead worker fails the next fetch). The main process
    still shuts them down through the loader, and they exit when it dies."""
    for signum in PREEMPTION_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if then is not None:
        then(worker_id)


def step_streams(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The VLBatch entries of a step batch (``itc``, ``region``; None when absent), without ``skipped``."""
    return {k: batch.get(k) for k in STREAM_KEYS}


def resolve_world(rank: int | None, world_size: int | None, trainer: Any = None) -> tuple[int, int]:
    """(rank, world size): explicit values, else the trainer's, else torch.distributed's, else RANK/WORLD_SIZE."""
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    if trainer is not None:
        found = (int(trainer.global_rank), int(trainer.world_size))
    else:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            found = (dist.get_rank(), dist.get_world_size())
        else:
            found = (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))
    return (found[0] if rank is None else int(rank)), (found[1] if world_size is None else int(world_size))


def _check_args(cfg: StreamSettings, num_workers: int) -> None:
    checks = {
        "batch_size": cfg.batch_size >= 1, "region_batch_size": cfg.region_batch_size >= 1,
        "region_images": cfg.region_images >= 1, "max_regions": cfg.max_regions >= 1,
        "epoch_steps": cfg.epoch_steps >= 1, "max_tokens": cfg.max_tokens >= 2, "max_masks": cfg.max_masks >= 1,
        "region_prob": 0.0 <= cfg.region_prob <= 1.0, "num_workers": num_workers >= 0,
        "image_size": cfg.image_size > 0 and (cfg.grid is not None or cfg.image_size % cfg.patch_size == 0),
        "grid_size": cfg.grid_size >= 1,
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"invalid data settings: {bad} (image_size must be a positive multiple of patch_size)")


class PretrainDataModule(L.LightningDataModule):
    """Pre-training data from weighted sources (Hydra-friendly plain arguments).

    Args:
        sources: ``[{name, urls, weight, kind: shards|img2dataset, streams: [itc, region], resampled?}]``
            (see :mod:`xvlm_lit.data.sources`).
        image_size: ``R``; ``patch_size``: the vision grid's patch (32 for Swin-B, 16 for ViT-B/16); the region
            patch masks have ``1 + n^2`` entries with ``n = R / patch_size``, or ``n = grid_size`` when given (it
            must equal the model's ``grid_size``).
        tokenizer_path: a local tokenizer folder; None = the default BERT-base-uncased vocabulary.
        max_tokens, max_words, max_masks, mask_prob: text length, caption word limit, MLM cap and fraction.
        batch_size: image-text texts per rank and step.
        region_batch_size, region_images, max_regions: region texts per rank and step (exactly; padding is
            ``valid=False``), at most that many images per region batch, at most that many texts per image.
        region_prob: probability that a step carries a region batch (decided by ``(seed, step)`` only).
        num_workers, pin_memory, persistent_workers, prefetch_factor: DataLoader settings.
        seed: the base seed of every draw.
        epoch_steps: steps per epoch (the train loader's length).
        val_sources: validation sources (same format; read once, in order); None = no validation loader.
        val_batch_size: image-text slots per validation batch (default ``batch_size``).
        resampled: default shard sampling of the sources (per-source ``resampled`` overrides it): False partitions
            the shards across ranks x workers (disjoint; needs at least that many shards), True draws them with
            replacement (any shard count).
        shuffle_buffer: raw samples buffered per source and reader for shuffling.
        crop_scale: area range of the image-text RandomResizedCrop (reference: 0.2-1.0).
        randaugment: the reference's RandAugment (2 ops, magnitude 7) on training images; off where the texts
            name colours that its photometric ops (equalize, autocontrast, brightness) would falsify.
        rank, world_size: set explicitly (tests, custom launchers); None = from the trainer / environment.
        shapes_world: keyword arguments of ``data_prep.shapes.ensure_shapes_world`` run in ``prepare_data``
            (the embedded demo corpus); None = nothing to prepare.
    """

    def __init__(self, sources: Sequence[Mapping[str, Any]], image_size: int = 224, tokenizer_path: str | None = None,
                 max_tokens: int = 40, max_words: int = 30, max_masks: int = 8, batch_size: int = 128,
                 region_batch_size: int = 128, region_images: int = 48, max_regions: int = 5,
                 region_prob: float = 0.5, num_workers: int = 4, seed: int = 42, epoch_steps: int = 1000,
                 val_sources: Sequence[Mapping[str, Any]] | None = None, val_batch_size: int | None = None,
                 patch_size: int = 32, grid_size: int | None = None, mask_prob: float = 0.25,
                 resampled: bool = False, shuffle_buffer: int = 500,
                 crop_scale: Sequence[float] = (0.2, 1.0), randaugment: bool = True,
                 pin_memory: bool = False, persistent_workers: bool = False, prefetch_factor: int | None = 2,
                 rank: int | None = None, world_size: int | None = None,
                 shapes_world: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.settings = StreamSettings(
            image_size=int(image_size), patch_size=int(patch_size),
            grid=None if grid_size is None else int(grid_size), tokenizer_path=tokenizer_path,
            max_tokens=int(max_tokens), max_words=int(max_words), max_masks=int(max_masks),
            mask_prob=float(mask_prob), batch_size=int(batch_size), region_batch_size=int(region_batch_size),
            region_images=int(region_images), max_regions=int(max_regions), region_prob=float(region_prob),
            seed=int(seed), epoch_steps=int(epoch_steps), resampled=bool(resampled),
            shuffle_buffer=int(shuffle_buffer), crop_scale=(float(crop_scale[0]), float(crop_scale[1])),
            randaugment=bool(randaugment))
        _check_args(self.settings, num_workers)
        self.val_settings = replace(self.settings, batch_size=int(val_batch_size or batch_size))
        self.source_cfgs, self.val_source_cfgs = sources, val_sources
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self.persistent_workers, self.prefetch_factor = bool(persistent_workers), prefetch_factor
        self.rank, self.world_size = rank, world_size
        self.shapes_world = dict(shapes_world) if shapes_world else None
        self.train_sources: list[SourceSpec] = []
        self.val_sources: list[SourceSpec] = []
        self._loaders: list[StepLoader] = []

    # ------------------------------------------------------------------------------------------- set-up
    def prepare_data(self) -> None:
        """Generate the demo corpus when ``shapes_world`` is set (called on one process)."""
        if self.shapes_world:
            from data_prep.shapes import ensure_shapes_world

            ensure_shapes_world(**self.shapes_world)

    def setup(self, stage: str | None = None) -> None:
        """Resolve rank / world size and the sources; checks shard counts against ranks x workers."""
        self.rank, self.world_size = resolve_world(self.rank, self.world_size, getattr(self, "trainer", None))
        if stage in (None, "fit") and not self.train_sources:
            self.train_sources = make_sources(self.source_cfgs)
            check_reader_count(self.train_sources, self.world_size, self.num_workers, self.settings.resampled)
        if stage in (None, "fit", "validate") and self.val_source_cfgs and not self.val_sources:
            self.val_sources = make_sources(self.val_source_cfgs)

    def _loader_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        if self.num_workers > 0:
            kwargs.update(persistent_workers=self.persistent_workers, prefetch_factor=self.prefetch_factor)
        return kwargs

    def _trainer_epoch(self) -> int | None:
        trainer = getattr(self, "trainer", None)
        return None if trainer is None else int(trainer.current_epoch)

    def _trainer_consumed(self) -> int | None:
        """Training step batches of the current epoch whose step has run (Lightning's own count, the one it
        resumes its loop from); None outside a trainer."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    # ------------------------------------------------------------------------------------------- loaders
    def train_dataloader(self) -> StepLoader:
        """Step batches of this rank; ``len() == epoch_steps``."""
        if not self.train_sources:
            self.setup("fit")
        stream = PretrainStream(self.train_sources, self.settings, self.rank, self.world_size)
        loader = StepLoader(stream, epoch_fn=self._trainer_epoch, consumed_fn=self._trainer_consumed,
                            **self._loader_kwargs())
        self._loaders.append(loader)
        return loader

    def val_dataloader(self) -> StepLoader | list:
        """Deterministic validation step batches of this rank (``[]`` when there are no validation sources)."""
        if self.val_source_cfgs and not self.val_sources:
            self.setup("validate")
        if not self.val_sources:
            return []
        stream = ValStream(self.val_sources, self.val_settings, self.rank, self.world_size)
        loader = StepLoader(stream, **self._loader_kwargs())
        self._loaders.append(loader)
        return loader

    def skip_counts(self) -> dict[str, int]:
        """Skips by reason seen by this rank's loaders so far (batches already handed out)."""
        total: Counter[str] = Counter()
        for loader in self._loaders:
            total.update(loader.skip_totals)
        return dict(total)
