"""Fixtures of the datamodule tests: a tiny shapes corpus, the tokenizer, tar writers and a datamodule factory."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from data_prep.shapes import ensure_shapes_world
from data_prep.shards import read_samples
from xvlm_lit.data.datamodule import PretrainDataModule

N_TRAIN, N_VAL, SHARD, SIZE = 200, 60, 40, 96
R = 64  # training image side in the tests (patch 16 -> a 4 x 4 grid)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """200 train images in 5 shards, 60 val images in 2 shards, 96 px."""
    out = tmp_path_factory.mktemp("dm_shapes")
    return ensure_shapes_world(out, N_TRAIN, N_VAL, seed=0, size=SIZE, shard_size=SHARD, workers=1)


@pytest.fixture(scope="session")
def train_samples(shapes_dir) -> list[dict]:
    """Every train sample as ``{"__key__", "jpg", "json"}`` (json parsed)."""
    return [s for p in sorted((shapes_dir / "train").glob("*.tar")) for s in read_samples(p)]


@pytest.fixture(scope="session")
def tokenizer():
    from xvlm_lit.data.tokenizer import load_tokenizer

    return load_tokenizer()


def jpeg_bytes(size: tuple[int, int] = (48, 40), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG")
    return buf.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A tar with the given (name, bytes) members, in order."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def sample_members(key: str, jpg: bytes, record: Any) -> list[tuple[str, bytes]]:
    """The members of one shard-schema sample (``record`` may be bytes for broken json)."""
    data = record if isinstance(record, bytes) else json.dumps(record).encode()
    return [(f"{key}.jpg", jpg), (f"{key}.json", data)]


def record(image_id: str, size: tuple[int, int], captions=(), regions=(), objects=()) -> dict:
    return {"image_id": image_id, "source": "t", "width": size[0], "height": size[1], "captions": list(captions),
            "regions": list(regions), "objects": list(objects)}


@pytest.fixture
def make_dm(shapes_dir) -> Callable[..., PretrainDataModule]:
    """A small datamodule on the shapes corpus; keyword arguments override the defaults."""

    def make(**overrides: Any) -> PretrainDataModule:
        args: dict[str, Any] = dict(
            sources=[{"name": "shapes", "urls": str(shapes_dir / "train"), "streams": ["itc", "region"]}],
            image_size=R, patch_size=16, max_tokens=24, max_masks=4, batch_size=8, region_batch_size=16,
            region_images=6, max_regions=5, region_prob=0.5, num_workers=0, seed=7, epoch_steps=6,
            shuffle_buffer=16, rank=0, world_size=1,
        )
        args.update(overrides)
        dm = PretrainDataModule(**args)
        dm.setup("fit")
        return dm

    return make
