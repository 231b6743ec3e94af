"""Data-loader throughput from real shards with the full pre-training augmentation (224 px, RandAugment)."""

from __future__ import annotations

import time
from pathlib import Path

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.data.datamodule import PretrainDataModule


def shapes_shards(root: Path, size: int = 160, n_train: int = 256, shard_size: int = 64) -> Path:
    """A shapes-world corpus under ``root`` (generated once, reused when its arguments match). Its generator draws
    at most 160 px: the loader decodes 160 px JPEGs and its crops resize them to the model's 224 px (real corpora
    decode larger JPEGs: this figure is an upper bound for them)."""
    from data_prep.shapes import ensure_shapes_world

    return ensure_shapes_world(root, n_train=n_train, n_val=8, seed=0, size=size, shard_size=shard_size, workers=1)


def loader_throughput(root: Path, workers: int = 1, batches: int = 8, image_size: int = 224, batch: int = 32,
                      region_texts: int = 32, region_images: int = 12, n_train: int = 256) -> dict:
    """Samples/s of the training loader (RandomResizedCrop + flip + RandAugment, region crops, tokenisation, MLM
    masks, collation), after its first batch (worker start-up excluded).

    A sample is one image-text pair or one region text (its image decoded and augmented once per region batch).
    """
    world = shapes_shards(root, n_train=n_train, shard_size=max(8, n_train // 4))
    dm = PretrainDataModule(
        sources=[{"name": "shapes", "urls": str(world / "train"), "streams": ["itc", "region"]}],
        image_size=image_size, patch_size=32, max_tokens=30, max_masks=6, batch_size=batch,
        region_batch_size=region_texts, region_images=region_images, region_prob=0.5, num_workers=workers,
        seed=0, epoch_steps=batches + 1, resampled=True, randaugment=True, crop_scale=(0.2, 1.0),
        rank=0, world_size=1)
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    next(it)
    t0 = time.perf_counter()
    samples = images = 0
    for _ in range(batches):
        step = next(it)
        for sub in step.values():
            if isinstance(sub, VLBatch):
                samples += int(sub.valid_mask().sum())
                images += sub.images.shape[0]
    elapsed = time.perf_counter() - t0
    return {"workers": workers, "image_size": image_size, "batches": batches, "samples_per_s": samples / elapsed,
            "samples_per_s_per_worker": samples / elapsed / max(1, workers), "images_per_s": images / elapsed,
            "target_samples_per_s_per_worker": 150}
