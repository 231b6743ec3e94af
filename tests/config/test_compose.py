"""Every experiment composes; loss plugins are chosen by config alone; reference hyper-parameters are present."""

from functools import partial
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from xvlm_lit.tasks.pretrain import PretrainModule
from xvlm_lit.testing import micro_xvlm, random_batch

CONF = Path(__file__).resolve().parents[2] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def compose_train(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_resolves(name, tmp_path):
    cfg = compose_train([f"experiment={name}", f"hydra.runtime.output_dir={tmp_path}"])
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    OmegaConf.resolve(cfg)
    for key in ("model", "loss", "data", "task", "trainer"):
        assert cfg[key] is not None, key
    by_prefix = {"retrieval": {"itc", "itm"}, "grounding_weak": {"itc", "itm"}, "grounding": {"bbox"},
                 "nlvr2_pretrain": {"ta"}, "nlvr2": {"nlvr"}, "vqa": {"vqa"},
                 "caption": {"caption"}}
    expected = next((v for k, v in by_prefix.items() if name.startswith(k)), {"itc", "itm", "mlm", "bbox"})
    assert set(cfg.loss) == expected


@pytest.mark.parametrize(("name", "steps", "tokens", "masks"), [("pretrain_4m", 204795, 40, 8),
                                                                 ("pretrain_16m", 200640, 30, 6)])
def test_reference_hyper_parameters(name, steps, tokens, masks):
    cfg = compose_train([f"experiment={name}", "hydra.runtime.output_dir=/tmp/x"])
    assert cfg.model.vision.model_name == "swin_base_patch4_window7_224" and cfg.model.vision.image_size == 224
    opt = cfg.task.optimizer
    assert (opt.lr, list(opt.betas), opt.eps, opt.weight_decay) == (1e-4, [0.9, 0.98], 1e-8, 0.01)
    assert cfg.task.new_lr_mult == 2.0 and cfg.task.warmup_steps == 2500 and cfg.task.total_steps == steps
    assert cfg.trainer.gradient_clip_val == 1.0 and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.max_steps == steps and "ddp" in cfg.trainer.strategy
    assert cfg.data.batch_size == 128 and cfg.data.region_batch_size == 128 and cfg.data.region_images == 48
    assert cfg.data.max_tokens == tokens and cfg.data.max_masks == masks
    assert cfg.data.region_prob == 0.5


def module_from(cfg):
    losses = {name: instantiate(node) for name, node in cfg.loss.items()}
    return PretrainModule(micro_xvlm(), losses, partial(torch.optim.AdamW, lr=1e-4)).eval()


@pytest.mark.parametrize("override", ["~loss.bbox", "loss=[itc,itm,mlm]"])
def test_dropping_bbox_by_config(override):
    full = module_from(compose_train(["hydra.runtime.output_dir=/tmp/x"]))
    less = module_from(compose_train([override, "hydra.runtime.output_dir=/tmp/x"]))
    assert set(less.losses) == {"itc", "itm", "mlm"}
    batch = {"region": random_batch(full.model, 2, 3, seed=4)}
    torch.manual_seed(0)
    t_full, l_full = full.compute_losses(batch)
    torch.manual_seed(0)
    t_less, l_less = less.compute_losses(batch)
    assert "bbox_l1_loss" in l_full and "bbox_l1_loss" not in l_less
    assert torch.allclose(t_full - t_less, l_full["bbox_l1_loss"] + l_full["bbox_giou_loss"], atol=1e-5)


def test_single_loss_and_reweighting_by_config():
    only_itc = module_from(compose_train(["loss=[itc]", "loss.itc.weight=0.5", "hydra.runtime.output_dir=/tmp/x"]))
    batch = {"itc": random_batch(only_itc.model, 4, regions=False)}
    total, logs = only_itc.compute_losses(batch)
    assert set(only_itc.losses) == {"itc"} and torch.allclose(total, 0.5 * logs["itc_loss"])


def test_wrong_key_is_named():
    with pytest.raises(Exception, match="no_such_key"):
        compose_train(["task.no_such_key=1"])


def test_cpu_trainer_accepts_ddp_strategy(tmp_path):
    from lightning.pytorch.strategies import DDPStrategy

    cfg = compose_train(["trainer.strategy=ddp", "trainer.devices=2", f"hydra.runtime.output_dir={tmp_path}"])
    trainer = instantiate(cfg.trainer, default_root_dir=str(tmp_path), logger=False)
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.strategy._get_process_group_backend() == "gloo" and trainer.num_devices == 2


def test_empty_loss_set_is_named(tmp_path):
    from xvlm_lit.config import ConfigError, check_config

    cfg = compose_train(["loss=[]", f"hydra.runtime.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="no loss selected"):
        check_config(cfg)


def test_keep_host_memory_is_on_by_default_and_switchable(monkeypatch):
    import xvlm_lit.train as train

    assert compose_train([]).keep_host_memory is True
    cfg = compose_train(["keep_host_memory=false"])
    assert cfg.keep_host_memory is False
    calls = []

    class Built(Exception):
        pass

    def build(cfg):
        raise Built

    monkeypatch.setattr(train, "keep_freed_memory", lambda: calls.append(1))
    monkeypatch.setattr(train, "build", build)
    for value, expected in ((False, 0), (True, 1)):
        calls.clear()
        with pytest.raises(Built):
            train.run(compose_train([f"keep_host_memory={str(value).lower()}"]))
        assert len(calls) == expected
