"""End-to-end weakly supervised grounding on a tiny shapes world: ITC + ITM training for 3 steps, Grad-CAM box
ranking on val and test; ``python -m xvlm_lit.eval`` on the saved checkpoint gives the same numbers; the reported
accuracy and random-candidate baseline equal ones recomputed from the predictions file and ``dets.json``."""

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from torchvision.ops import box_convert, box_iou

from data_prep.shapes import ensure_shapes_world
from data_prep.shapes_tasks import export_shapes_tasks
from xvlm_lit.eval import evaluate
from xvlm_lit.train import run

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("e2e-weak_grounding")
SMALL = ["model.init_from=null", "data.limit=24", "data.num_workers=0", "data.batch_size=8", "data.eval_batch_size=16",
         "trainer.max_steps=3", "trainer.val_check_interval=3", "trainer.log_every_n_steps=1",
         "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def grounding_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("weak")
    world = ensure_shapes_world(root / "shapes", n_train=24, n_val=24, seed=0, size=128, shard_size=12, workers=1)
    return export_shapes_tasks(world, root / "shapes_tasks") / "grounding"


def compose_cfg(config: str, out: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name=config, return_hydra_config=True,
                      overrides=[f"hydra.runtime.output_dir={out}", *overrides])
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def xyxy(boxes: list[list[float]]) -> torch.Tensor:
    return box_convert(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "xywh", "xyxy")


def test_weak_grounding_trains_evaluates_and_matches_its_predictions(grounding_dir, tmp_path):
    common = ["experiment=grounding_weak_demo", f"data.root={grounding_dir}", *SMALL]
    trained = run(compose_cfg("train", tmp_path / "train", common))
    assert trained["global_step"] == 3 and "train/itc_loss" in trained and "train/itm_loss" in trained
    best = next((tmp_path / "train" / "checkpoints").glob("best-*.ckpt"))
    again = evaluate(compose_cfg("eval", tmp_path / "eval", [*common, f"ckpt_path={best}"]))
    keys = [f"{p}/{m}" for p in ("val", "test/test") for m in ("acc50", "mean_iou", "random_box_acc50")]
    for key in keys:
        assert 0 <= trained[key] <= 100 and again[key] == trained[key], key
    assert trained["test/test/no_candidates"] == 0

    rows = [json.loads(x) for x in (tmp_path / "eval" / "predictions_test.jsonl").read_text().splitlines()]
    lines = (grounding_dir / "test.jsonl").read_text().splitlines()[:24]  # data.limit=24
    assert len(rows) == sum(len(json.loads(line)["texts"]) for line in lines)  # each expression scored once
    dets = json.loads((grounding_dir / "dets.json").read_text())
    for row in rows:  # every prediction is one of its image's candidates
        assert row["pred_xywh"] == pytest.approx(dets[row["image_id"]][row["pred_index"]], abs=1e-4)

    iou = box_iou(xyxy([r["pred_xywh"] for r in rows]), xyxy([r["target_xywh"] for r in rows])).diagonal()
    assert float((iou >= 0.5).double().mean() * 100) == pytest.approx(trained["test/test/acc50"], abs=1e-9)

    chance = [float((box_iou(xyxy(dets[r["image_id"]]), xyxy([r["target_xywh"]]))[:, 0] >= 0.5).double().mean())
              for r in rows]
    assert sum(chance) / len(chance) * 100 == pytest.approx(trained["test/test/random_box_acc50"], abs=1e-6)


def test_refcoco_plus_experiment_has_the_reference_hyper_parameters(tmp_path):
    cfg = compose_cfg("train", tmp_path, ["experiment=grounding_weak_refcoco_plus"])
    assert set(cfg.loss) == {"itc", "itm"} and cfg.data.task == "weak_grounding"
    assert cfg.task.optimizer.lr == 2e-5 and cfg.task.warmup_ratio == 0.1 and cfg.task.new_lr_mult == 2.0
    assert cfg.trainer.max_epochs == 5 and cfg.data.batch_size == 20 and cfg.model.vision.image_size == 384
    assert cfg.task.gradcam_layer == 3 and cfg.task.alpha == 0.5  # block_num 9 = fusion layer 3 of 6
    assert cfg.task.dets_file == f"{cfg.data.root}/dets.json"
