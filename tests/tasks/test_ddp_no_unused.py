"""DDP with find_unused_parameters=False: all four plugins, steps with and without a region batch (2 gloo ranks)."""

import pytest
import torch
import torch.multiprocessing as mp
from hydra import compose, initialize_config_dir

from xvlm_lit.config import CONF_DIR
from xvlm_lit.testing_ddp import worker

pytestmark = pytest.mark.xdist_group("distributed")


def run(tmp_path, touch: bool) -> list[dict]:
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(tmp_path), touch), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]


def test_steps_without_region_batch_run_under_static_ddp(tmp_path):
    ranks = run(tmp_path, touch=True)
    for out in ranks:
        assert out["error"] is None
        # the box head: zero gradient on image-text steps (connected, untouched), a real one with regions
        assert out["bbox_grad"][0] == 0.0 and out["bbox_grad"][2] == 0.0 and out["bbox_grad"][1] > 0
    for name, p in ranks[0]["params"].items():  # DDP kept the replicas identical
        assert torch.equal(p, ranks[1]["params"][name]), name


@pytest.mark.slow  # a second 2-process spawn (~30 s on 2 busy cores)
def test_without_the_zero_term_ddp_fails_on_the_unused_box_head(tmp_path):
    ranks = run(tmp_path, touch=False)
    assert all(out["error"] is not None for out in ranks)
    assert "find_unused_parameters" in ranks[0]["error"] or "reduction" in ranks[0]["error"]


def test_gpu_trainer_uses_plain_ddp_and_finetuning_keeps_unused_search():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        gpu = compose(config_name="train", overrides=["trainer=gpu"])
        fine = compose(config_name="train", overrides=["trainer=gpu_finetune"])
    assert gpu.trainer.strategy == "ddp"
    assert fine.trainer.strategy == "ddp_find_unused_parameters_true"
