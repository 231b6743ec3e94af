"""End-to-end fine-tuning on a tiny shapes world: retrieval and grounding train, pick the best checkpoint on val,
evaluate val and test, write predictions; ``python -m xvlm_lit.eval`` on the saved checkpoint gives the same
numbers; the reported grounding accuracy equals one recomputed from the predictions file."""

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from torchvision.ops import box_iou

from xvlm_lit.eval import evaluate
from xvlm_lit.train import run

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("e2e-tasks")
SMALL = ["model.init_from=null", "data.limit=24", "data.num_workers=0", "data.batch_size=8", "data.eval_batch_size=16",
         "trainer.max_steps=3", "trainer.val_check_interval=3", "trainer.log_every_n_steps=1",
         "trainer.enable_progress_bar=false"]



def compose_cfg(config: str, out: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name=config, return_hydra_config=True,
                      overrides=[f"hydra.runtime.output_dir={out}", *overrides])
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def train_and_reevaluate(task_dirs: Path, tmp_path: Path, experiment: str, folder: str) -> tuple[dict, dict, Path]:
    common = [f"experiment={experiment}", f"data.root={task_dirs / folder}", *SMALL]
    trained = run(compose_cfg("train", tmp_path / "train", common))
    best = next((tmp_path / "train" / "checkpoints").glob("best-*.ckpt"))
    again = evaluate(compose_cfg("eval", tmp_path / "eval", [*common, f"ckpt_path={best}"]))
    return trained, again, tmp_path


def test_retrieval_fine_tunes_and_evaluates_a_saved_checkpoint(task_dirs, tmp_path):
    trained, again, out = train_and_reevaluate(task_dirs, tmp_path, "retrieval_demo", "retrieval")
    for key in ("val/r_mean", "val/tr_r1", "test/test/ir_r1", "test/test/itc_tr_r5"):
        assert 0 <= trained[key] <= 100 and again[key] == trained[key], key
    preds = json.loads((out / "train" / "predictions_test.json").read_text())
    assert len(preds["text_retrieval"]) == 12 and len(preds["image_retrieval"]) == 12 * 3
    assert json.loads((out / "eval" / "metrics.json").read_text())["test/test/r_mean"] == trained["test/test/r_mean"]


def test_grounding_accuracy_matches_its_predictions_file(task_dirs, tmp_path):
    trained, again, out = train_and_reevaluate(task_dirs, tmp_path, "grounding_demo", "grounding")
    assert again["test/test/acc50"] == trained["test/test/acc50"]
    rows = [json.loads(line) for line in (out / "eval" / "predictions_test.jsonl").read_text().splitlines()]
    lines = (task_dirs / "grounding" / "test.jsonl").read_text().splitlines()[:24]  # data.limit=24
    assert len(rows) == sum(len(json.loads(line)["texts"]) for line in lines)  # each expression scored once
    pred = torch.tensor([r["pred_xyxy"] for r in rows])
    target = torch.tensor([r["target_xyxy"] for r in rows])
    iou = box_iou(pred, target).diagonal()
    assert abs(float((iou >= 0.5).float().mean() * 100) - trained["test/test/acc50"]) < 0.5  # rounded boxes
