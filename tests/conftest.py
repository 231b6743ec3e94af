"""Shared test set-up: offline, quiet, small thread counts."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


@pytest.fixture
def conf_dir() -> Path:
    return CONF


def compose_model(name: str, overrides: list[str] | None = None):
    """The ``conf/model/<name>.yaml`` node composed under ``model`` (so interpolations resolve)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF / "model"), version_base="1.3"):
        node = compose(config_name=name, overrides=overrides or [])
    return OmegaConf.create({"model": node}).model
