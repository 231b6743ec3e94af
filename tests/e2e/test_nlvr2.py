"""End-to-end NLVR2 on a tiny shapes world: the text-assignment pre-stage trains on the world's shards and its
checkpoint starts the fine-tuning (ta_head dropped, cls_head new); fine-tuning picks the best checkpoint on dev,
evaluates dev and test1, writes predictions; ``python -m xvlm_lit.eval`` on the saved checkpoint gives the same
numbers, and the logged accuracy equals the one recomputed from the predictions file."""

import json
from pathlib import Path

import pytest

from data_prep.shapes import ensure_shapes_world
from data_prep.shapes_nlvr2 import export_shapes_nlvr2
from xvlm_lit.eval import evaluate
from xvlm_lit.train import run

from .test_tasks import compose_cfg

pytestmark = pytest.mark.xdist_group("e2e-nlvr2")
SMALL = ["data.num_workers=0", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nlvr2")
    shapes = ensure_shapes_world(root / "shapes", n_train=24, n_val=24, seed=0, size=128, shard_size=12, workers=1)
    export_shapes_nlvr2(shapes, root / "shapes_tasks", n_train=24, n_eval=10, seed=0)
    return root


def test_nlvr2_pre_stage_then_fine_tuning_and_reevaluation(world, tmp_path):
    pre = run(compose_cfg("train", tmp_path / "pre", [
        "experiment=nlvr2_pretrain_demo", f"paths.data_dir={world}", "task.init_from=null", "data.batch_size=6",
        "trainer.max_steps=2", *SMALL]))
    assert pre["global_step"] == 2 and "train/ta_loss" in pre
    ta_ckpt = tmp_path / "pre" / "checkpoints" / "last.ckpt"

    common = ["experiment=nlvr2_demo", f"data.root={world / 'shapes_tasks' / 'nlvr2'}", "data.batch_size=8",
              "data.eval_batch_size=4", "trainer.max_steps=3", "trainer.val_check_interval=3", *SMALL]
    trained = run(compose_cfg("train", tmp_path / "train", [*common, f"task.init_from={ta_ckpt}"]))
    best = next((tmp_path / "train" / "checkpoints").glob("best-*.ckpt"))
    again = evaluate(compose_cfg("eval", tmp_path / "eval", [*common, f"ckpt_path={best}"]))
    for key in ("val/acc", "test/test1/acc", "test/test1/majority_acc"):
        assert 0 <= trained[key] <= 100 and again[key] == trained[key], key
    rows = [json.loads(x) for x in (tmp_path / "eval" / "predictions_test1.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(10))  # every example scored once
    assert abs(100 * sum(r["pred"] == r["label"] for r in rows) / len(rows) - trained["test/test1/acc"]) < 1e-4
    labels = [r["label"] for r in rows]
    assert trained["test/test1/majority_acc"] in (100 * labels.count(True) / 10, 100 * labels.count(False) / 10)
