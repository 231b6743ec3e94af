"""Too few shards for ranks x workers: `python -m xvlm_lit.train` stops before the first step with one line naming
the numbers and what to do (no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_too_few_shards_for_the_readers_is_one_clear_line_before_training(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "OMP_NUM_THREADS": "1",
           "XVLM_DATA": str(tmp_path / "data"), "WANDB_MODE": "offline"}
    args = ["data.shapes_world.n_train=48", "data.shapes_world.n_val=16", "data.shapes_world.shard_size=24",
            "data.batch_size=4", "data.num_workers=3", "trainer.max_steps=1", "eval=null",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run([sys.executable, "-m", "xvlm_lit.train", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert ("config error: source 'shapes' has 2 shard(s) but 1 rank(s) x 3 worker(s) = 3 readers each need at "
            "least one: re-shard it into >= 3 shards, lower num_workers, or set resampled: true") in proc.stderr, out
    assert "Traceback" not in out
    assert not list((tmp_path / "run").glob("**/checkpoints/*.ckpt"))  # no training step was taken
