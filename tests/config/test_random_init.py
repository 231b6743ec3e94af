"""The full pre-training recipes refuse to start from random weights unless asked (model.allow_random_init)."""

import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from xvlm_lit.build import build_model, check_initialisers, split_initialisers
from xvlm_lit.config import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"


def model_node(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return cfg.model


@pytest.mark.parametrize("name", ["pretrain_4m", "pretrain_16m"])
def test_full_recipes_without_weights_fail_naming_the_keys(name):
    _, inits = split_initialisers(model_node([f"experiment={name}"]))
    with pytest.raises(ConfigError, match=r"model\.vision\.pretrained_path and model\.bert_path null") as err:
        check_initialisers(inits)
    assert "model.allow_random_init=true" in str(err.value) and "docs/pretrained_weights.md" in str(err.value)


def test_one_missing_is_named_alone_and_init_from_suffices():
    _, inits = split_initialisers(model_node(["experiment=pretrain_4m", "model.bert_path=/w/bert"]))
    with pytest.raises(ConfigError, match=r"^model\.vision\.pretrained_path null"):
        check_initialisers(inits)
    _, inits = split_initialisers(model_node(["experiment=pretrain_4m", "model.init_from=/w/x.th"]))
    check_initialisers(inits)


def test_allowed_random_init_warns(caplog):
    spec, inits = split_initialisers(model_node(["experiment=pretrain_4m", "model.allow_random_init=true"]))
    assert "allow_random_init" not in spec  # never reaches the model constructor
    with caplog.at_level(logging.WARNING, logger="xvlm_lit.build"):
        check_initialisers(inits)
    assert "RANDOM weights" in caplog.text


def test_demo_model_has_no_such_requirement():
    node = model_node(["experiment=pretrain_demo"])
    assert "allow_random_init" not in node
    check_initialisers(split_initialisers(node)[1])
    with pytest.raises(ConfigError):  # build_model applies the check before any file is read
        build_model(model_node(["experiment=pretrain_4m"]))
