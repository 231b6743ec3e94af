"""The trainer's default precision: bf16-mixed only where the hardware runs bf16 natively."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from xvlm_lit import hardware
from xvlm_lit.config import CONF_DIR


@pytest.mark.parametrize("native, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_cpu_precision_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.delenv("XVLM_PRECISION", raising=False)
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: native)
    assert hardware.best_precision("cpu") == expected


def test_gpu_precision_is_bf16_and_env_overrides(monkeypatch):
    monkeypatch.delenv("XVLM_PRECISION", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hardware.best_precision("gpu") == "bf16-mixed"
    monkeypatch.setenv("XVLM_PRECISION", "32-true")
    assert hardware.best_precision("gpu") == "32-true"


def test_unknown_accelerator_is_named(monkeypatch):
    monkeypatch.delenv("XVLM_PRECISION", raising=False)
    with pytest.raises(ValueError, match="unknown accelerator 'tpu'"):
        hardware.best_precision("tpu")


def test_cpu_trainer_config_resolves_to_the_machine_choice(monkeypatch):
    monkeypatch.delenv("XVLM_PRECISION", raising=False)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["trainer=cpu"])
        fine = compose(config_name="train", overrides=["trainer=cpu_finetune"])
    assert cfg.trainer.precision == hardware.best_precision("cpu")
    assert fine.trainer.precision == "32-true"
