"""Task evaluation under DDP (2 gloo processes) scores every sample exactly once: the metrics and the predictions
equal a 1-process evaluation of the same checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xvlm_lit.build import build_model
from xvlm_lit.checkpoints import save_safetensors

from ..conftest import compose_model

pytestmark = pytest.mark.xdist_group("e2e-tasks_ddp")


def eval_cli(args: list[str], cwd: Path) -> dict:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "xvlm_lit.eval", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((cwd / "run" / "metrics.json").read_text())


@pytest.mark.parametrize(("experiment", "folder", "preds"), [
    ("grounding_demo", "grounding", "predictions_test.jsonl"),
    # the retrieval protocol itself is checked on 2 ranks in tests/evaluation; this is the Lightning wiring
    pytest.param("retrieval_demo", "retrieval", "predictions_test.json", marks=pytest.mark.slow),
])
def test_two_ranks_equal_one(task_dirs, tmp_path, experiment, folder, preds):
    torch.manual_seed(0)
    ckpt = save_safetensors(build_model(compose_model("xvlm_tiny")), tmp_path / "model.safetensors")
    common = [f"experiment={experiment}", f"ckpt_path={ckpt}", f"data.root={task_dirs / folder}", "data.limit=21",
              "data.num_workers=0", "data.eval_batch_size=8", "hydra.run.dir=run", "trainer.enable_progress_bar=false"]
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = eval_cli(common, tmp_path / "one")
    two = eval_cli([*common, "trainer.devices=2", "trainer.strategy=ddp"], tmp_path / "two")
    assert one.keys() == two.keys() and len(one) >= 4
    for key in one:
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
    a, b = ((tmp_path / d / "run" / preds).read_text() for d in ("one", "two"))
    if preds.endswith(".jsonl"):  # grounding: same rows, each (object, expression) once
        rows_a, rows_b = a.splitlines(), b.splitlines()
        assert len(rows_a) == len(rows_b) == len({json.loads(r)["index"] for r in rows_b})
        for ra, rb in zip(rows_a, rows_b, strict=True):
            ja, jb = json.loads(ra), json.loads(rb)
            assert ja["target_xyxy"] == jb["target_xyxy"] and ja["text"] == jb["text"]
            assert ja["pred_xyxy"] == pytest.approx(jb["pred_xyxy"], abs=0.02)
    else:
        pa, pb = json.loads(a), json.loads(b)
        assert [r["texts"] for r in pa["text_retrieval"]] == [r["texts"] for r in pb["text_retrieval"]]
        assert [r["images"] for r in pa["image_retrieval"]] == [r["images"] for r in pb["image_retrieval"]]
