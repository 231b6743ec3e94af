"""What a checkpoint needs besides its weights: the model config, and the data/task settings of its evaluation.

Order: an explicit ``model=`` (a ``conf/model`` name, a yaml file or a config node) wins; else the run's own
``<run>/.hydra/config.yaml`` beside the checkpoint (model, data and task nodes); else ``conf/model/xvlm_base``
(``vqa_base`` for a file holding an answer decoder), the architecture of the reference's released checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from xvlm_lit.checkpoints.run_config import run_config_path
from xvlm_lit.config import CONF_DIR
from xvlm_lit.inference.errors import InferenceError

DEFAULT_MODEL = "xvlm_base"
DEFAULT_VQA_MODEL = "vqa_base"


@dataclass
class CheckpointConfig:
    """The model node to build, and the settings of the checkpoint's evaluation (plain values).

    Attributes:
        model: a ``conf/model``-style node (``_target_`` ...).
        data: ``max_tokens``, ``max_words``, ``tokenizer_path``, ``image_size`` and, for VQA,
            ``eval_max_tokens``, ``max_answer_tokens``, ``answer_list`` / ``root`` (whatever the run config has).
        task: the run's task node as plain values (``_target_``, ``prompt``, ``num_beams`` ...), empty without one.
        losses: names of the run's loss plugins.
        source: where the config came from (a path or ``conf/model/<name>``).
    """

    model: DictConfig
    data: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)
    losses: tuple[str, ...] = ()
    source: str = ""


def compose_model(name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/model/<name>.yaml`` (or a yaml path) composed with Hydra's defaults lists, as ``model=<name>``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    path = Path(name).expanduser()
    conf_dir, stem = (path.parent.resolve(), path.stem) if path.suffix in (".yaml", ".yml") else (
        CONF_DIR / "model", name)
    if not (conf_dir / f"{stem}.yaml").is_file():
        have = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
        raise InferenceError(f"model={name!r}: no such model config (a yaml file, or one of {have})")
    overrides = [o.removeprefix("model.") for o in overrides]
    if GlobalHydra.instance().is_initialized():  # e.g. called inside a Hydra app: compose in a fresh context
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        node = compose(config_name=stem, overrides=list(overrides))
    return OmegaConf.create({"model": node}).model


def _plain(node: Any) -> dict[str, Any]:
    """A config node's entries that resolve, as plain values (``${hydra:...}`` outside a Hydra run does not)."""
    if not isinstance(node, DictConfig):
        return {}
    out = {}
    for key in node:
        try:
            value = node[key]
            out[str(key)] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        except Exception:  # noqa: BLE001 - an unresolvable entry is simply not available
            continue
    return out


def from_run_config(path: Path, overrides: Sequence[str] = ()) -> CheckpointConfig:
    """The run config's model node (with ``key=value`` overrides of the model) and its data/task settings."""
    saved = OmegaConf.load(path)
    if "model" not in saved:
        raise InferenceError(f"{path}: no 'model' node; give model=<conf/model name> explicitly")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise InferenceError(f"override {item!r} is not key=value")
        OmegaConf.update(saved, "model." + key.removeprefix("model."), OmegaConf.from_dotlist([f"v={value}"]).v)
    return _from_root(saved, str(path))


def _from_root(root: DictConfig, source: str) -> CheckpointConfig:
    """A composed (training) config's model node, data and task settings and loss names."""
    loss = root.get("loss")
    losses = tuple(str(k) for k in loss) if isinstance(loss, DictConfig) else ()
    return CheckpointConfig(root.model, _plain(root.get("data")), _plain(root.get("task")), losses, source)


def resolve_config(ckpt: str | os.PathLike, model: str | Mapping | DictConfig | None = None,
                   overrides: Sequence[str] = (), vqa: bool = False) -> CheckpointConfig:
    """The :class:`CheckpointConfig` of ``ckpt`` (module docstring); ``vqa``: the file holds an answer decoder."""
    if model is None:
        run = run_config_path(ckpt)
        if run is not None:
            return from_run_config(run, overrides)
        model = DEFAULT_VQA_MODEL if vqa else DEFAULT_MODEL
    if isinstance(model, str | os.PathLike):
        node = compose_model(str(model), overrides)
        return CheckpointConfig(node, source=f"conf/model/{model}" if not str(model).endswith(".yaml") else str(model))
    node = model if isinstance(model, DictConfig) else OmegaConf.create(dict(model))
    if "model" in node and "_target_" not in node:
        return _from_root(node, "<given config>")
    return CheckpointConfig(node, source="<given config>")
