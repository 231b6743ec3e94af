"""Recognise what a checkpoint file holds and in which layout, so one entry point (``init_from``) takes them all.

- a reference X-VLM file ``{"model": state_dict, "config": ..., ...}`` (reference layout);
- a Lightning checkpoint ``{"state_dict": {"model.<our key>": ...}, ...}`` (our layout, other entries ignored);
- our safetensors export (metadata ``layout``), or any safetensors file (layout read from the keys);
- a bare state dict in either layout (a ``module.`` DDP prefix is removed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xvlm_lit.checkpoints.io import read_checkpoint
from xvlm_lit.checkpoints.keymap import KeyMap, ours_keymap, reference_finetuned_keymap, reference_keymap

OURS_PREFIXES = ("vision_encoder.backbone.", "fusion_encoder.", "mlm_head.")
LIGHTNING_PREFIX = "model."


@dataclass
class Source:
    """A checkpoint's tensors, their layout (``"ours"`` or ``"reference"``), and what else the file held."""

    state_dict: dict[str, torch.Tensor]
    layout: str
    kind: str
    path: str
    ignored: list[str] = field(default_factory=list)  # file entries that are not model weights


FINETUNED_PREFIXES = ("text_encoder.encoder.", "text_encoder.embeddings.")


def detect_layout(keys) -> str:
    """``ours``, ``reference`` (pre-training names) or ``reference_finetuned`` (``text_encoder.X``, no ``bert.``)."""
    keys = list(keys)
    if any(k.startswith(OURS_PREFIXES) for k in keys):
        return "ours"
    has_bert = any(k.startswith("text_encoder.bert.") for k in keys)
    if not has_bert and any(k.startswith(FINETUNED_PREFIXES) for k in keys):
        return "reference_finetuned"
    return "reference"


def _tensors(obj: Any, path: str, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{path}: {where} is not a non-empty mapping of tensors")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: {where} holds non-tensor entries {bad[:10]}: not a state dict")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    return sd


def read_source(path: str | os.PathLike) -> Source:
    """Read ``path`` safely (see :mod:`xvlm_lit.checkpoints.io`) and recognise its structure."""
    path = str(path)
    obj = read_checkpoint(path)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: top level is a {type(obj).__name__}, expected a dict (a state dict or "
                         "{'model': state_dict} or a Lightning checkpoint)")
    if "metadata" in obj and "state_dict" in obj and len(obj) == 2:  # safetensors
        sd = _tensors(obj["state_dict"], path, "the safetensors file")
        layout = obj["metadata"].get("layout") or detect_layout(sd)
        return Source(sd, layout, "safetensors", path)
    if isinstance(obj.get("state_dict"), Mapping):  # Lightning (or a {"state_dict": sd} file)
        full = _tensors(obj["state_dict"], path, "'state_dict'")
        if any(k.startswith(LIGHTNING_PREFIX) for k in full):
            sd = {k.removeprefix(LIGHTNING_PREFIX): v for k, v in full.items() if k.startswith(LIGHTNING_PREFIX)}
            ignored = [f"state_dict.{k}" for k in full if not k.startswith(LIGHTNING_PREFIX)]
            ignored += [k for k in obj if k != "state_dict"]
            return Source(sd, "ours", "lightning", path, ignored)
        return Source(full, detect_layout(full), "state_dict", path, [k for k in obj if k != "state_dict"])
    if isinstance(obj.get("model"), Mapping):  # reference {"model": sd, "config": ..., ...}
        sd = _tensors(obj["model"], path, "'model'")
        return Source(sd, detect_layout(sd), "model", path, [k for k in obj if k != "model"])
    sd = _tensors(obj, path, "the file")
    return Source(sd, detect_layout(sd), "state_dict", path)


def keymap_for(model: nn.Module, source: Source) -> KeyMap:
    """The key map reading ``source`` into our ``XVLM``."""
    if source.layout == "ours":
        return ours_keymap(model)
    if source.layout == "reference":
        return reference_keymap(model)
    if source.layout == "reference_finetuned":
        return reference_finetuned_keymap(model)
    raise ValueError(f"{source.path}: unknown layout {source.layout!r} (expected 'ours', 'reference' or "
                     "'reference_finetuned')")
