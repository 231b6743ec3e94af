"""End-to-end captioning on a tiny shapes world: the caption domain pre-stage trains on the world's shards and its
checkpoint starts the fine-tuning; fine-tuning picks the best checkpoint on val CIDEr, evaluates val and test with
beam search, writes captions files; ``python -m xvlm_lit.eval`` on the saved checkpoint gives the same numbers."""

import json
from pathlib import Path

import pytest

from data_prep.shapes import ensure_shapes_world
from data_prep.shapes_caption import export_shapes_caption
from xvlm_lit.eval import evaluate
from xvlm_lit.train import run

from .test_tasks import compose_cfg

pytestmark = pytest.mark.xdist_group("e2e-caption")
SMALL = ["data.num_workers=0", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("caption")
    shapes = ensure_shapes_world(root / "shapes", n_train=24, n_val=12, seed=0, size=128, shard_size=12, workers=1)
    export_shapes_caption(shapes, root / "shapes_tasks")
    return root


def test_caption_pre_stage_then_fine_tuning_and_reevaluation(world, tmp_path):
    pre = run(compose_cfg("train", tmp_path / "pre", [
        "experiment=caption_pretrain_demo", f"paths.data_dir={world}", "model.init_from=null", "data.batch_size=4",
        "trainer.max_steps=2", *SMALL]))
    assert pre["global_step"] == 2 and "train/caption_loss" in pre
    common = ["experiment=caption_demo", f"data.root={world / 'shapes_tasks' / 'caption'}", "data.batch_size=8",
              "data.eval_batch_size=4", "task.max_length=10", "task.baseline_candidates=1", "trainer.max_steps=3",
              "trainer.val_check_interval=3", *SMALL]
    ckpt = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    trained = run(compose_cfg("train", tmp_path / "train", [*common, f"task.init_from={ckpt}"]))
    best = next((tmp_path / "train" / "checkpoints").glob("best-*.ckpt"))
    again = evaluate(compose_cfg("eval", tmp_path / "eval", [*common, f"ckpt_path={best}"]))
    for key in ("val/cider", "val/bleu4", "test/test/cider", "test/test/rouge_l", "test/test/constant_cider"):
        assert 0 <= trained[key] and again[key] == trained[key], key
    rows = json.loads((tmp_path / "eval" / "captions_test.json").read_text())
    assert sorted(r["image_id"] for r in rows) == [f"shapes/val-{i:06d}" for i in range(6, 12)]
    assert all(isinstance(r["caption"], str) and "picture of" not in r["caption"] for r in rows)
