"""Command-line overrides that do not compose: one clear message naming the key and the valid choices.

Hydra's own messages for these cases end in a hint that can lead to a second, worse error: for a misspelt key it
suggests ``+trainer.max_stepz=5``, which composes and then fails inside ``Trainer(...)``. Before Hydra runs,
:func:`exit_on_composition_error` composes the command line once with Hydra's compose API and, when that fails,
exits with ``config error: ...``:

- an unknown config group option (``model=xvlm_huge``, ``experiment=pretrain_1m``): the valid options of the group
  and the closest one;
- an unknown key (``trainer.max_stepz=5``, ``seedd=1``): the closest valid key (``difflib``) and the valid keys of
  its node (its keys and, for a ``_target_`` node, its target's arguments); a key that is a valid argument not set
  in the config files (``trainer.max_epochs=3``) is told to use ``+trainer.max_epochs=3``, which then works.
Other composition errors are left to Hydra's own report.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig

from xvlm_lit.config_schema import HYDRA_KEYS, closest, target_parameters, unknown_key_message

_SKIP_FLAGS = ("help", "hydra_help", "info", "shell_completion", "multirun", "experimental_rerun", "config_dir",
               "config_path")


def _compose(conf_dir: str, config_name: str, overrides: Sequence[str]) -> DictConfig:
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def missing_option_message(exn: MissingConfigException, overrides: Sequence[str]) -> str | None:
    """``unknown model 'xvlm_huge' (did you mean ...?): valid choices are ...`` for ``group/option`` not found."""
    missing = exn.missing_cfg_file or ""
    if "/" not in missing or exn.options is None:
        return None
    group, option = missing.rsplit("/", 1)
    options = sorted(exn.options)
    guess = closest(option, options)
    hint = f" (did you mean {group}={guess}?)" if guess else ""
    given = next((o for o in overrides if o.lstrip("+~").split("=", 1)[0] in (group, group.replace("/", "."))), "")
    return (f"unknown {group} '{option}'{f' in {given!r}' if given else ''}{hint}: valid choices for {group} are "
            f"{', '.join(options)} (the files of conf/{group}/)")


def _key_of(exn: ConfigCompositionException) -> str | None:
    text = str(exn)
    prefix = "Could not override '"
    if not text.startswith(prefix):
        return None
    return text[len(prefix):].split("'", 1)[0]


def unknown_key_in(cfg: DictConfig, key: str, value: str) -> str:
    """The message for override ``key=value`` of a key that ``cfg`` does not have."""
    parts = key.split(".")
    node, path = cfg, ""
    for depth, part in enumerate(parts):
        target = node.get("_target_") if isinstance(node, DictConfig) and "_target_" in node else None
        params, _ = target_parameters(target) if isinstance(target, str) else (None, {})
        if isinstance(node, DictConfig) and part in node:
            node, path = node[part], f"{path}.{part}" if path else part
            continue
        if params is not None and part in params and depth == len(parts) - 1:
            return (f"config key '{key}' is not set in the config files but is an argument of {target}: add it "
                    f"with '+{key}={value}'")
        valid = sorted(set(map(str, node.keys()) if isinstance(node, DictConfig) else ()) - HYDRA_KEYS
                       | set(p for p in (params or {}) if p not in ("self", "args")))
        full = f"{path}.{part}" if path else part
        return unknown_key_message(full, path, target or "", valid)
    return f"config key '{key}' cannot be overridden here"


def composition_error(conf_dir: str, config_name: str, overrides: Sequence[str]) -> str | None:
    """None when ``overrides`` compose, else the message of :mod:`this module <xvlm_lit.config_errors>`."""
    try:
        _compose(conf_dir, config_name, overrides)
        return None
    except MissingConfigException as exn:
        return missing_option_message(exn, overrides)
    except ConfigCompositionException as exn:
        key = _key_of(exn)
        if key is None:
            return None
        rest = [o for o in overrides if o.split("=", 1)[0] != key]
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key and "=" in o), "...")
        try:
            cfg = _compose(conf_dir, config_name, rest)
        except Exception:  # noqa: BLE001 - another override is broken too: let Hydra report
            return None
        return unknown_key_in(cfg, key, value)
    except Exception:  # noqa: BLE001 - anything else: Hydra's own report
        return None


def exit_on_composition_error(conf_dir: str, default_config: str, argv: Sequence[str] | None = None) -> None:
    """Exit with ``config error: ...`` when the command line's overrides do not compose (see the module docstring).

    Multirun sweeps, ``--help``/``--info`` and other config directories are left to Hydra.
    """
    from hydra._internal.utils import get_args_parser

    try:
        args = get_args_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit:
        return  # Hydra reports its own usage error
    if any(getattr(args, flag, None) for flag in _SKIP_FLAGS):
        return
    message = composition_error(conf_dir, args.config_name or default_config, args.overrides)
    if message:
        raise SystemExit(f"config error: {message}")
