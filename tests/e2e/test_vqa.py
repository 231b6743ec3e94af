"""End-to-end VQA on a tiny shapes-world VQA folder: 3 training steps, the best checkpoint on val evaluated on val
and test with results files; ``python -m xvlm_lit.eval`` on the saved checkpoint gives the same numbers; the
reported accuracy equals one recomputed from the predictions file; generation runs as an alternative inference."""

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from data_prep.shapes import ensure_shapes_world
from data_prep.shapes_vqa import export_shapes_vqa
from xvlm_lit.build import build_model
from xvlm_lit.checkpoints import save_safetensors
from xvlm_lit.config import ConfigError
from xvlm_lit.eval import evaluate
from xvlm_lit.evaluation.vqa import vqa_accuracy
from xvlm_lit.train import run

from ..conftest import compose_model

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("e2e-vqa")
SMALL = ["task.init_from=null", "task.allow_random_init=true", "data.limit=24", "data.num_workers=0",
         "data.batch_size=8", "data.eval_batch_size=16", "trainer.max_steps=3", "trainer.val_check_interval=3",
         "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false", "task.k_test=8"]


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vqa")
    world = ensure_shapes_world(root / "shapes", n_train=12, n_val=16, seed=0, size=128, shard_size=12, workers=1)
    return export_shapes_vqa(world, root / "vqa", per_image=2)


def compose_cfg(config: str, out: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name=config, return_hydra_config=True,
                      overrides=[f"hydra.runtime.output_dir={out}", *overrides])
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def test_vqa_fine_tunes_and_a_saved_checkpoint_evaluates_the_same(vqa_dir, tmp_path):
    common = ["experiment=vqa_demo", f"data.root={vqa_dir}", *SMALL]
    trained = run(compose_cfg("train", tmp_path / "train", common))
    assert trained["global_step"] == 3
    for key in ("val/vqa_acc", "test/test/vqa_acc", "test/test/majority_acc"):
        assert 0 <= trained[key] <= 100, key
    assert trained["test/test/num_questions"] == 16  # 8 held-out test images x 2 questions
    best = next((tmp_path / "train" / "checkpoints").glob("best-*.ckpt"))
    again = evaluate(compose_cfg("eval", tmp_path / "eval", [*common, f"ckpt_path={best}"]))
    for key in ("val/vqa_acc", "test/test/vqa_acc", "test/test/majority_acc"):
        assert again[key] == trained[key], key

    rows = [json.loads(x) for x in (tmp_path / "eval" / "predictions_test.jsonl").read_text().splitlines()]
    lines = [json.loads(x) for x in (vqa_dir / "test.jsonl").read_text().splitlines()]
    assert [r["question_id"] for r in rows] == [x["question_id"] for x in lines]  # each question answered once
    answer_list = json.loads((vqa_dir / "answer_list.json").read_text())
    assert all(r["answer"] in answer_list and r["answer"] == r["top"][0][0] for r in rows)
    recomputed = 100 * sum(vqa_accuracy(r["answer"], r["answers"]) for r in rows) / len(rows)
    assert recomputed == pytest.approx(trained["test/test/vqa_acc"], abs=1e-6)
    results = json.loads((tmp_path / "eval" / "vqa_results_test.json").read_text())
    assert results == sorted(({"question_id": r["question_id"], "answer": r["answer"]} for r in rows),
                             key=lambda r: r["question_id"])

    # resuming the run applies no initialisation (none is configured, and none is needed)
    last = tmp_path / "train" / "checkpoints" / "last.ckpt"
    resumed = run(compose_cfg("train", tmp_path / "resume", [*common, "task.allow_random_init=false",
                                                             f"ckpt_path={last}", "trainer.max_steps=4",
                                                             "test_after_fit=false"]))
    assert resumed["global_step"] == 4

    generated = evaluate(compose_cfg("eval", tmp_path / "gen", [*common, f"ckpt_path={best}",
                                                                 "task.inference=generate"]))
    assert 0 <= generated["test/test/vqa_acc"] <= 100
    assert (tmp_path / "gen" / "vqa_results_test.json").is_file()


def test_fitting_without_an_initialisation_is_a_config_error(vqa_dir, tmp_path):
    overrides = ["experiment=vqa_demo", f"data.root={vqa_dir}", *SMALL, "task.allow_random_init=false"]
    with pytest.raises(ConfigError, match="task.init_from is not set"):
        run(compose_cfg("train", tmp_path / "train", overrides))


def test_init_from_a_pretrained_checkpoint_at_fit_start(vqa_dir, tmp_path):
    torch.manual_seed(0)
    pretrained = build_model(compose_model("xvlm_tiny"))
    ckpt = save_safetensors(pretrained, tmp_path / "pretrained.safetensors")
    overrides = ["experiment=vqa_demo", f"data.root={vqa_dir}", *SMALL, f"task.init_from={ckpt}",
                 "task.allow_random_init=false", "task.optimizer.lr=0", "trainer.max_steps=1", "test_after_fit=false"]
    run(compose_cfg("train", tmp_path / "train", overrides))
    state = torch.load(tmp_path / "train" / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=False)["state_dict"]
    theirs = pretrained.state_dict()
    for i in range(2):  # lr 0: the saved weights are the initialisation
        for name in ("attention.self.query.weight", "crossattention.self.query.weight", "intermediate.dense.weight"):
            assert torch.equal(state[f"model.answer_decoder.layer.{i}.{name}"],
                               theirs[f"fusion_encoder.layer.{i}.{name}"]), (i, name)
        assert state[f"model.answer_decoder.layer.{i}.crossattention.self.key.weight"].shape == (256, 256)
    assert torch.equal(state["model.answer_decoder.embeddings.word_embeddings.weight"],
                       theirs["text_encoder.bert.embeddings.word_embeddings.weight"])
    assert torch.equal(state["model.vision_encoder.backbone.patch_embed.proj.weight"],
                       theirs["vision_encoder.backbone.patch_embed.proj.weight"])
