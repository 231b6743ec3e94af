"""Build the network from its config node, then apply the weight initialisers the node names.

Models only build (no file is read in a constructor); the weights named in ``model.vision.pretrained_path``,
``model.bert_path`` and ``model.init_from`` are loaded here, in that order, through :mod:`xvlm_lit.checkpoints`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from xvlm_lit.checkpoints import init_from, load_bert_dir, load_vision_checkpoint
from xvlm_lit.config import ConfigError
from xvlm_lit.models.xvlm import XVLM

log = logging.getLogger(__name__)
INITIALISERS = ("init_from", "bert_path", "allow_random_init")


def split_initialisers(node: DictConfig | Mapping) -> tuple[dict[str, Any], dict[str, str | None]]:
    """The model node without its initialiser keys, and those keys (``init_from``, ``bert_path``,
    ``allow_random_init``, ``vision_pretrained_path``)."""
    spec = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    inits = {k: spec.pop(k, None) for k in INITIALISERS}
    vision = spec.get("vision")
    inits["vision_pretrained_path"] = vision.pop("pretrained_path", None) if isinstance(vision, dict) else None
    return spec, inits


def _existing(path: str, key: str) -> str:
    if path.startswith("builtin:"):
        return path
    full = Path(os.path.expanduser(path))
    if not full.exists():
        raise FileNotFoundError(f"{key}={path!r}: no such file or directory (nothing is downloaded: give a local "
                                "path)")
    return str(full)


def check_initialisers(inits: dict[str, Any]) -> None:
    """``model.allow_random_init: false`` (the full pre-training recipes) demands pre-trained weights: both
    ``vision.pretrained_path`` and ``bert_path``, or ``init_from``; otherwise a :class:`ConfigError` saying where
    to get them. Absent or true: anything goes (a missing one is logged as a warning when the key is present)."""
    allow = inits.get("allow_random_init")
    missing = [k for k, v in (("model.vision.pretrained_path", inits["vision_pretrained_path"]),
                              ("model.bert_path", inits["bert_path"])) if not v]
    if allow is None or not missing or inits["init_from"]:
        return
    if allow:
        log.warning("%s null: those parts start from RANDOM weights (model.allow_random_init=true)",
                    " and ".join(missing))
        return
    raise ConfigError(f"{' and '.join(missing)} null: this recipe starts from ImageNet Swin and BERT weights "
                      "(SPEC section 7), and would otherwise train from random initialisation. Download them and "
                      "give local paths (model.vision.pretrained_path=.../swin_base_patch4_window7_224_22k.pth "
                      "model.bert_path=.../bert-base-uncased; see docs/pretrained_weights.md), or set "
                      "model.allow_random_init=true to train from scratch on purpose.")


def build_model(node: DictConfig | Mapping, load_weights: bool = True) -> XVLM:
    """Instantiate ``node`` (a ``conf/model`` node) and, when ``load_weights``, load the weights it names."""
    spec, inits = split_initialisers(node)
    if load_weights:
        check_initialisers(inits)
    model = instantiate(spec)
    if not load_weights:
        return model
    if inits["vision_pretrained_path"]:
        path = _existing(inits["vision_pretrained_path"], "model.vision.pretrained_path")
        load_vision_checkpoint(model.vision_encoder, path)
    if inits["bert_path"]:
        report = load_bert_dir(model, _existing(inits["bert_path"], "model.bert_path"))
        log.info("initialised text/fusion from %s; %d tensors stay new", inits["bert_path"], len(report.initialised))
    if inits["init_from"]:
        init_from(model, _existing(inits["init_from"], "model.init_from"))
    return model
