"""Fine-tuning tasks draw their first evaluation examples: grounding boxes and weak-grounding Grad-CAM overlays,
``task.pictures`` of them per split, and a loss curve from the CSV logger; ``task.pictures=0`` draws none."""

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from PIL import Image

from xvlm_lit.callbacks.pictures import PRED, TRUE
from xvlm_lit.train import run

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("e2e-tasks")
SMALL = ["model.init_from=null", "data.limit=8", "data.num_workers=0", "data.batch_size=4", "data.eval_batch_size=8",
         "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
         "trainer.enable_progress_bar=false"]


def run_task(experiment: str, data_root: Path, out: Path, extra: list[str]) -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True,
                      overrides=[f"hydra.runtime.output_dir={out}", f"experiment={experiment}",
                                 f"data.root={data_root}", *SMALL, *extra])
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    run(cfg)


def colours(path: Path) -> set[tuple[int, int, int]]:
    return {tuple(c) for c in np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)}


def test_grounding_pictures_per_split_and_loss_curve(task_dirs, tmp_path):
    out = tmp_path / "run"
    run_task("grounding_demo", task_dirs / "grounding", out, ["task.pictures=3"])
    for key in ("val_grounding", "test_test_grounding"):
        files = sorted((out / "pictures" / key).glob("*.png"))
        assert len(files) == 3, key
        assert all(PRED in colours(f) and TRUE in colours(f) for f in files)
    assert (out / "pictures" / "loss_curve.png").is_file()


def test_weak_grounding_gradcam_pictures_and_switch_off(task_dirs, tmp_path):
    out = tmp_path / "weak"
    run_task("grounding_weak_demo", task_dirs / "grounding", out, ["task.pictures=2"])
    files = sorted((out / "pictures" / "val_gradcam").glob("*.png"))
    assert len(files) == 2
    pixels = np.asarray(Image.open(files[0]).convert("RGB")).astype(int)
    assert ((pixels[..., 0] - pixels[..., 1]) > 60).any()  # red heat blended in
    off = tmp_path / "off"
    run_task("grounding_demo", task_dirs / "grounding", off, ["task.pictures=0"])
    assert not list((off / "pictures").glob("*_grounding"))


def test_retrieval_rows_per_split(task_dirs, tmp_path):
    out = tmp_path / "retrieval"
    run_task("retrieval_demo", task_dirs / "retrieval", out, ["task.pictures=2"])
    for key in ("val_retrieval", "test_test_retrieval"):
        files = sorted((out / "pictures" / key).glob("*.png"))
        assert len(files) == 2, key
        assert all(TRUE in colours(f) for f in files)  # the true image is framed (in the top 5 or after it)
