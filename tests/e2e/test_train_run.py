"""End-to-end: the entry point on a tiny shapes corpus (train, eval, resume, multirun, W&B offline)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from xvlm_lit.train import run

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("e2e-train_run")

TINY = ["data.shapes_world.n_train=96", "data.shapes_world.n_val=32", "data.shapes_world.shard_size=24",
        "data.batch_size=4", "data.region_batch_size=4", "data.region_images=2", "data.num_workers=1",
        "task.warmup_steps=1", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false"]


def compose_run(tmp_path: Path, overrides: list[str]):
    out = tmp_path / "run"
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True,
                      overrides=[f"hydra.runtime.output_dir={out}", f"paths.data_dir={tmp_path / 'data'}",
                                 *TINY, *overrides])
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, out


def test_demo_trains_evaluates_and_writes_metrics(tmp_path, capsys):
    cfg, out = compose_run(tmp_path, ["trainer.max_steps=3", "eval.limit=16"])
    metrics = run(cfg)
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("tr_r1", "ir_r1", "grounding_acc50", "constant_box_acc50", "chance_tr_r1"):
        assert 0 <= saved[key] <= 100 and saved[key] == metrics[key]
    assert saved["num_images"] == 16
    logged = (out / "csv" / "metrics.csv").read_text().splitlines()[0]
    for term in ("train/itc_loss", "train/itm_loss", "train/mlm_loss", "train/bbox_l1_loss", "train/loss",
                 "train/itc/temp", "train/skipped/corrupt_image", "lr-AdamW"):
        assert term in logged, term
    printed = capsys.readouterr().out
    assert "TR@1" in printed and "best constant box" in printed and str(out.resolve()) in printed


def test_resume_from_checkpoint_continues_the_step_count(tmp_path):
    cfg, out = compose_run(tmp_path, ["trainer.max_steps=2", "callbacks.checkpoint.every_n_train_steps=1",
                                      "eval=null"])
    run(cfg)
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file()
    first = torch.load(last, map_location="cpu", weights_only=False)
    assert first["global_step"] == 2
    cfg2, _ = compose_run(tmp_path, ["trainer.max_steps=4", "eval=null", f"ckpt_path={last}",
                                     "callbacks.checkpoint.every_n_train_steps=1"])
    assert run(cfg2)["global_step"] == 4  # continued from step 2, not restarted
    second = torch.load(last, map_location="cpu", weights_only=False)
    assert second["global_step"] == 4


def test_last_checkpoint_is_the_final_model_off_the_save_grid(tmp_path):
    """max_steps=5 with saves every 2 steps: last.ckpt must hold step 5 (Lightning alone leaves step 4), and
    evaluating that file must give exactly the metrics the run reported for its final model."""
    cfg, out = compose_run(tmp_path, ["trainer.max_steps=5", "callbacks.checkpoint.every_n_train_steps=2",
                                      "eval.limit=16"])
    reported = run(cfg)
    ckpts = out / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 5
    assert {p.name for p in ckpts.glob("*.ckpt")} == {"last.ckpt", "step0000002.ckpt", "step0000004.ckpt",
                                                       "step0000005.ckpt"}
    grid = torch.load(ckpts / "step0000004.ckpt", map_location="cpu", weights_only=False)
    key = "model.bbox_head.3.weight"
    assert not torch.equal(last["state_dict"][key], grid["state_dict"][key])  # the last step changed the weights

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        ecfg = compose(config_name="eval", return_hydra_config=True,
                       overrides=[f"hydra.runtime.output_dir={tmp_path / 'eval'}",
                                  f"paths.data_dir={tmp_path / 'data'}", f"ckpt_path={ckpts / 'last.ckpt'}",
                                  "eval.limit=16"])
    HydraConfig.instance().set_config(ecfg)
    with open_dict(ecfg):
        del ecfg["hydra"]
    from xvlm_lit.eval import evaluate

    again = evaluate(ecfg)
    for k in ("tr_r1", "ir_r1", "itc_tr_r1", "grounding_acc50", "grounding_mean_iou"):
        assert again[k] == reported[k], k
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["grounding_mean_iou"] == again[
        "grounding_mean_iou"]


def test_empty_loss_set_gets_the_project_message(tmp_path):
    done = cli(["loss=[]", "trainer.max_steps=1", "eval=null", *TINY], tmp_path, timeout=120)
    assert done.returncode != 0
    assert "no loss selected" in done.stderr and "Traceback" not in done.stderr


def cli(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "XVLM_DATA": str(cwd / "data")}
    return subprocess.run([sys.executable, "-m", "xvlm_lit.train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_multirun_sweep_over_a_loss_weight(tmp_path):
    done = cli(["-m", "loss.itc.weight=0.5,1.0", "trainer.max_steps=1", "eval=null", *TINY], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted((tmp_path / "multirun").glob("*/*/*/csv/metrics.csv"))
    assert len(runs) == 2


def test_wandb_logger_offline(tmp_path):
    done = cli(["logger=wandb", "trainer.max_steps=1", "eval=null", *TINY], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(tmp_path.glob("outputs/**/wandb/offline-run-*"))


def test_wrong_key_on_the_command_line_is_named(tmp_path):
    done = cli(["trainer.max_step=1"], tmp_path, timeout=120)
    assert done.returncode != 0 and "max_step" in done.stderr
