"""Config errors name the key and the valid choices; Hydra's "+key" hint never leads into a second, worse error."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir

from xvlm_lit.config import NO_LOSS, ConfigError, check_config, check_schema
from xvlm_lit.config_errors import composition_error, exit_on_composition_error

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def compose_cfg(overrides: list[str], name: str = "train"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def error_of(overrides: list[str], name: str = "train") -> str:
    message = composition_error(str(CONF), name, overrides)
    assert message is not None, overrides
    return message


@pytest.mark.parametrize(("override", "expected"), [
    ("trainer.max_stepz=5", ("unknown config key 'trainer.max_stepz'", "did you mean 'trainer.max_steps'?",
                             "Valid keys of trainer (lightning.pytorch.Trainer)", "gradient_clip_val")),
    ("seedd=1", ("unknown config key 'seedd'", "did you mean 'seed'?", "Valid keys of the top level",
                 "ckpt_path")),
    ("trainr.max_steps=3", ("unknown config key 'trainr'", "did you mean 'trainer'?")),
    ("loss.itc.tempp=1", ("unknown config key 'loss.itc.tempp'", "xvlm_lit.losses.itc.ITCLoss",
                          "exact_gradient", "weight")),
    ("data.batch_sise=4", ("did you mean 'data.batch_size'?", "xvlm_lit.data.datamodule.PretrainDataModule")),
])
def test_misspelt_key_names_the_closest_key_and_the_valid_ones(override, expected):
    message = error_of([override])
    for text in expected:
        assert text in message, (text, message)
    assert "+" + override not in message  # never the hint that leads into a second error


def test_trainer_error_lists_every_trainer_argument():
    message = error_of(["trainer.max_stepz=5"])
    listed = message.split("Valid keys of trainer (lightning.pytorch.Trainer): ", 1)[1].split(", ")
    assert set(listed) == set(inspect.signature(L.Trainer).parameters)


def test_a_valid_argument_missing_from_the_files_is_told_to_use_plus_and_that_works():
    message = error_of(["trainer.detect_anomaly=true"])
    assert "'+trainer.detect_anomaly=true'" in message and "lightning.pytorch.Trainer" in message
    check_config(compose_cfg(["+trainer.detect_anomaly=true"]))  # the advice composes and passes the schema


@pytest.mark.parametrize(("override", "group", "choices"), [
    ("model=xvlm_huge", "model", MODELS), ("experiment=pretrain_1m", "experiment", EXPERIMENTS)])
def test_unknown_group_option_lists_the_valid_choices(override, group, choices):
    message = error_of([override])
    assert message.startswith(f"unknown {group} '{override.split('=')[1]}'")
    assert f"valid choices for {group} are {', '.join(choices)}" in message
    assert "did you mean" in message  # xvlm_base / pretrain_16m are close


def test_eval_overrides_are_checked_too():
    assert "valid choices for model are" in error_of(["model=xvlm_huge"], "eval")
    assert "did you mean 'eval.split'?" in error_of(["eval.splitt=val"], "eval")


@pytest.mark.parametrize(("overrides", "expected"), [
    (["+trainer.max_stepz=5"], "unknown config key 'trainer.max_stepz' (did you mean 'trainer.max_steps'?)"),
    (["+loss.itc.tempp=1"], "unknown config key 'loss.itc.tempp'"),
    (["trainer.max_steps=abc"], "config key 'trainer.max_steps' must be int, got 'abc' (str)"),
    (["data.batch_size=1.5"], "config key 'data.batch_size' must be int, got 1.5 (float)"),
    (["trainer.precision=17"], "config key 'trainer.precision' must be one of [64, 32, 16,"),
    (["task.warmup_steps=ten"], "config key 'task.warmup_steps' must be int"),
])
def test_added_keys_and_wrong_types_are_caught_before_instantiation(overrides, expected):
    assert composition_error(str(CONF), "train", overrides) is None  # Hydra composes these
    with pytest.raises(ConfigError) as err:
        check_config(compose_cfg(overrides))
    assert expected in str(err.value)


@pytest.mark.parametrize("overrides", [["loss=[]"], ["~loss.itc", "~loss.itm", "~loss.mlm", "~loss.bbox"]])
def test_an_empty_loss_set_is_an_error_naming_the_choices(overrides):
    with pytest.raises(ConfigError, match="no loss selected") as err:
        check_config(compose_cfg(overrides))
    assert str(err.value) == NO_LOSS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_passes_the_schema(name):
    check_config(compose_cfg([f"experiment={name}"]))


def test_the_eval_config_passes_the_schema():
    check_schema(compose_cfg([], "eval"))


def test_exit_on_composition_error_exits_with_the_message_and_leaves_good_lines_alone():
    with pytest.raises(SystemExit) as err:
        exit_on_composition_error(str(CONF), "train", ["trainer.max_stepz=5"])
    assert str(err.value.code).startswith("config error: unknown config key 'trainer.max_stepz'")
    exit_on_composition_error(str(CONF), "train", ["trainer.max_steps=5", "hydra.run.dir=/tmp/x"])
    exit_on_composition_error(str(CONF), "train", ["-m", "trainer.max_stepz=1,2"])  # sweeps: left to Hydra
    exit_on_composition_error(str(CONF), "train", ["--help"])


@pytest.mark.parametrize(("module", "args", "expected"), [
    # the schema check inside the run (Hydra composed the added key) and the check before Hydra runs
    ("xvlm_lit.train", ["+trainer.max_stepz=5"], "did you mean 'trainer.max_steps'?"),
    ("xvlm_lit.eval", ["experiment=pretrain_1m"], "valid choices for experiment are"),
])
def test_command_line_exits_non_zero_with_one_message_and_no_traceback(module, args, expected, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([sys.executable, "-m", module, *args, f"hydra.run.dir={tmp_path}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config error: " in proc.stderr and expected in proc.stderr, out
    assert "Traceback" not in out and "HYDRA_FULL_ERROR" not in out, out
