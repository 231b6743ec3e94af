"""Shared fixtures of the end-to-end tests."""

from pathlib import Path

import pytest

from data_prep.shapes import ensure_shapes_world
from data_prep.shapes_tasks import export_shapes_tasks


@pytest.fixture(scope="module")
def task_dirs(tmp_path_factory) -> Path:
    """Task folders (retrieval, grounding + dets.json) from a 24 + 24 image shapes world."""
    root = tmp_path_factory.mktemp("tasks")
    world = ensure_shapes_world(root / "shapes", n_train=24, n_val=24, seed=0, size=128, shard_size=12, workers=1)
    return export_shapes_tasks(world, root / "shapes_tasks")
