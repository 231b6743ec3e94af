"""``randaugment=false`` keeps the colours the captions name; the default recolours some training images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xvlm_lit.data.transforms import CLIP_MEAN, CLIP_STD

from .conftest import jpeg_bytes, record, sample_members, write_tar

RED = (200, 30, 30)


@pytest.fixture(scope="module")
def red_dir(tmp_path_factory) -> Path:
    """Twelve solid red images with a caption and a region."""
    out = tmp_path_factory.mktemp("red")
    jpg = jpeg_bytes((48, 40), RED)
    region = {"bbox": [4, 4, 20, 20], "captions": ["a red square"], "attributes": []}
    members = []
    for i in range(12):
        members += sample_members(f"r{i:02d}", jpg, record(f"t/r{i:02d}", (48, 40), ["a red picture"], [region]))
    write_tar(out / "red-000000.tar", members)
    return out


def mean_colours(make_dm, red_dir: Path, **kw) -> torch.Tensor:
    """Mean RGB (0-255) of every training image, image-text and region streams, over several steps: ``[N, 3]``."""
    dm = make_dm(sources=[{"name": "red", "urls": str(red_dir), "streams": ["itc", "region"]}], batch_size=4,
                 region_batch_size=4, region_images=2, region_prob=1.0, epoch_steps=8, shuffle_buffer=4, **kw)
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    images = [im for step in dm.train_dataloader() for b in (step["itc"], step["region"]) for im in b.images]
    return torch.stack([(im * std + mean).mul(255).mean((1, 2)) for im in images])


def test_without_randaugment_every_training_image_keeps_its_colour(make_dm, red_dir):
    colours = mean_colours(make_dm, red_dir, randaugment=False)
    assert len(colours) >= 40
    assert (colours - torch.tensor(RED, dtype=torch.float32)).abs().max() < 6  # JPEG and resize only


def test_default_randaugment_recolours_some_images(make_dm, red_dir):
    colours = mean_colours(make_dm, red_dir)
    off = (colours - torch.tensor(RED, dtype=torch.float32)).abs().amax(1) > 20
    assert 0 < int(off.sum()) < len(colours)
