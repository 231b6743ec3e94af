"""A 2-job sweep through submitit's local executor (hydra/launcher=slurm_local). hydra-submitit-launcher is in the
dev extra (make setup installs it); the test is skipped only in an environment without it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs `pip install -e .[slurm]`")
pytestmark = pytest.mark.xdist_group("e2e-submitit")

REPO = Path(__file__).resolve().parents[2]
TINY = ["data.shapes_world.n_train=48", "data.shapes_world.n_val=16", "data.shapes_world.shard_size=24",
        "data.batch_size=4", "data.region_batch_size=4", "data.region_images=2", "data.num_workers=0",
        "task.warmup_steps=1", "trainer.max_steps=1", "trainer.enable_progress_bar=false", "eval=null"]


def test_two_job_sweep_runs_through_the_submitit_local_launcher(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "XVLM_PRECISION": "32-true"}
    cmd = [sys.executable, "-m", "xvlm_lit.train", "-m", "hydra/launcher=slurm_local", "seed=1,2",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", f"paths.data_dir={tmp_path / 'data'}", *TINY]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted((tmp_path / "sweep").glob("[0-9]"))
    assert [j.name for j in jobs] == ["0", "1"]
    seeds = []
    for job in jobs:
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        seeds.append(1 if "seed=1" in overrides else 2)
        assert (job / "checkpoints" / "last.ckpt").is_file() or list(job.rglob("*.ckpt")), job
    assert sorted(seeds) == [1, 2]
    assert list((tmp_path / "sweep" / ".submitit").iterdir())  # submitit's job folders: it ran the jobs
