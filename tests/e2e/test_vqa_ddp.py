"""VQA evaluation under DDP (2 gloo processes) answers every question exactly once: the metrics, the predictions
and the results file equal a 1-process evaluation of the same checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_prep.shapes import ensure_shapes_world
from data_prep.shapes_vqa import export_shapes_vqa
from xvlm_lit.build import build_model
from xvlm_lit.checkpoints import save_safetensors

from ..conftest import compose_model

pytestmark = [pytest.mark.xdist_group("e2e-vqa_ddp"), pytest.mark.slow]  # two subprocesses: about a minute


def eval_cli(args: list[str], cwd: Path) -> dict:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "xvlm_lit.eval", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((cwd / "run" / "metrics.json").read_text())


def test_two_ranks_equal_one(tmp_path):
    world = ensure_shapes_world(tmp_path / "shapes", n_train=4, n_val=14, seed=1, size=128, shard_size=8, workers=1)
    folder = export_shapes_vqa(world, tmp_path / "vqa", per_image=3)
    torch.manual_seed(0)
    ckpt = save_safetensors(build_model(compose_model("vqa_tiny")), tmp_path / "model.safetensors")
    common = ["experiment=vqa_demo", f"ckpt_path={ckpt}", f"data.root={folder}", "data.limit=21",
              "data.num_workers=0", "data.eval_batch_size=4", "task.k_test=6", "hydra.run.dir=run",
              "trainer.enable_progress_bar=false"]
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = eval_cli(common, tmp_path / "one")
    two = eval_cli([*common, "trainer.devices=2", "trainer.strategy=ddp"], tmp_path / "two")
    assert {"val/vqa_acc", "test/test/vqa_acc", "test/test/majority_acc", "test/test/num_questions"} <= one.keys()
    assert one.keys() == two.keys() and one["test/test/num_questions"] == 21
    for key in one:
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
    for name in ("predictions_test.jsonl", "vqa_results_test.json", "vqa_results_val.json"):
        a, b = ((tmp_path / d / "run" / name).read_text() for d in ("one", "two"))
        if name.endswith(".jsonl"):
            rows_a, rows_b = ([json.loads(x) for x in t.splitlines()] for t in (a, b))
            assert [r["question_id"] for r in rows_a] == [r["question_id"] for r in rows_b]
            assert [r["answer"] for r in rows_a] == [r["answer"] for r in rows_b]
        else:
            assert json.loads(a) == json.loads(b) and len(json.loads(a)) == 21
