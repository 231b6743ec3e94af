"""Where the Hydra configs live, and checks that give clear errors for a wrong key or value."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from xvlm_lit.config_schema import SchemaError, check_keys


def _find_conf() -> Path:
    env = os.environ.get("XVLM_CONF")
    if env:
        return Path(env).resolve()
    repo = Path(__file__).resolve().parents[2] / "conf"  # src/xvlm_lit/config.py -> <repo>/conf
    if repo.is_dir():
        return repo
    raise FileNotFoundError("cannot find the conf/ directory: run from a checkout installed with `pip install -e .` "
                            "or set XVLM_CONF=/path/to/xvlm-lit/conf")


CONF_DIR = _find_conf()

REQUIRED = ("model", "data", "task", "trainer")
NO_LOSS = "no loss selected: choose at least one of conf/loss, e.g. loss=[itc,itm,mlm,bbox] or loss=[itc,itm]"


class ConfigError(ValueError):
    """A composed config that cannot run; the message names the key and what to do (printed without traceback)."""


def check_schema(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for a key no ``_target_`` takes or a value of the wrong type (see
    :mod:`xvlm_lit.config_schema`): caught before anything is instantiated."""
    try:
        check_keys(cfg)
    except SchemaError as err:
        raise ConfigError(str(err)) from None


def check_config(cfg: DictConfig) -> None:
    """Fail early, naming the key, when a required group is missing, a loss entry is malformed, or a key or value
    does not fit its node's target (:func:`check_schema`)."""
    for key in REQUIRED:
        if cfg.get(key) is None:
            raise ConfigError(f"config key '{key}' is missing: select one, e.g. `{key}=...` (see conf/{key}/)")
    losses = cfg.get("loss")
    if not losses:  # `loss=[]` composes to None or an empty node
        raise ConfigError(NO_LOSS)
    if not isinstance(losses, DictConfig):
        raise ConfigError(f"config 'loss' must map plugin names to configs, got {type(losses).__name__}: "
                          "select files of conf/loss, e.g. loss=[itc,itm,mlm,bbox]")
    for name, node in losses.items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(f"loss.{name} has no _target_: use a file of conf/loss/ (itc, itm, mlm, bbox)")
        if float(node.get("weight", 1.0)) < 0:
            raise ConfigError(f"loss.{name}.weight must be >= 0, got {node.weight}")
    check_schema(cfg)
