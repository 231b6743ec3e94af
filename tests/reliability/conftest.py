"""Fixtures of the reliability tests: one tiny shapes world, run configs, checkpoint comparison."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from data_prep.shapes import ensure_shapes_world

REPO = Path(__file__).resolve().parents[2]
WORLD = {"n_train": 96, "n_val": 32, "shard_size": 24, "seed": 0, "size": 128, "workers": 1}
# tiny, deterministic, a checkpoint after every step (step files kept), short epochs so runs cross epochs
TINY = [f"data.shapes_world.{k}={v}" for k, v in WORLD.items()] + [
    "data.batch_size=4", "data.region_batch_size=4", "data.region_images=2", "+data.epoch_steps=3",
    "task.warmup_steps=2", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
    "trainer.deterministic=true", "callbacks.checkpoint.every_n_train_steps=1", "eval=null",
    "logger=csv"]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """The data root (``paths.data_dir``) holding the generated shapes world the runs train on."""
    root = tmp_path_factory.mktemp("reliability_data")
    ensure_shapes_world(root / "shapes", **WORLD)
    return root


MAX_STEPS = 7  # epochs of 3 steps: resumes mid-epoch and at an epoch's end are both covered


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory, data_root) -> Path:
    """The checkpoint folder of a run of MAX_STEPS steps that nothing interrupted."""
    from xvlm_lit.train import run

    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    run(compose_run(out, data_root, [f"trainer.max_steps={MAX_STEPS}"]))
    return out / "checkpoints"


def compose_run(out: Path, data_root: Path, overrides: list[str]):
    """The composed ``train`` config of a run writing to ``out``."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True,
                      overrides=[f"hydra.runtime.output_dir={out}", f"paths.data_dir={data_root}", *TINY,
                                 *overrides])
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def train_cmd(out: Path, data_root: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "xvlm_lit.train", f"hydra.run.dir={out}", f"paths.data_dir={data_root}", *TINY,
            *overrides]


def child_env(**extra: str) -> dict[str, str]:
    src = str(REPO / "src")
    path = os.pathsep.join(p for p in (src, str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", **extra}


def start(cmd: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    """A training process in its own session (so a signal can go to its whole process group)."""
    return subprocess.Popen(cmd, cwd=cwd, env=child_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    """Poll until ``path`` exists (fails with the process output if it exits or times out first)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"training exited ({proc.returncode}) before {path.name}:\n{proc.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {path.name} after {timeout} s")
        time.sleep(0.05)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_training_state(a: dict, b: dict) -> None:
    """Weights, optimizer moments and step counts, scheduler: equal (bitwise, or within 1e-6)."""
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=0, atol=1e-6, msg=k)
    (oa,), (ob,) = a["optimizer_states"], b["optimizer_states"]
    assert oa["state"].keys() == ob["state"].keys() and oa["state"]
    for i, s in oa["state"].items():
        for name, v in s.items():
            torch.testing.assert_close(ob["state"][i][name], v, rtol=0, atol=1e-6, msg=f"optimizer {i}.{name}")
    assert a["lr_schedulers"] == b["lr_schedulers"]
