"""Fresh pre-training initialisation from single-modality weights, through the same strict importer:
an ImageNet backbone file into the vision encoder, a BERT directory into the text / fusion layers and MLM head."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from xvlm_lit.checkpoints.importer import ImportReport, import_state_dict
from xvlm_lit.checkpoints.io import read_checkpoint, read_safetensors
from xvlm_lit.checkpoints.keymap import bert_dir_keymap, imagenet_keymap, is_swin


def _unwrap(obj: object, path: str) -> dict[str, torch.Tensor]:
    """The state dict inside ``{"model": sd}``, ``{"state_dict": sd}`` (also our safetensors reading) or ``sd``."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict, {{'model': state_dict}} or {{'state_dict': state_dict}}")
    return dict(obj)


def swin_layout(keys) -> str:
    """``original`` (merging at the end of stages, Microsoft / reference files) or ``timm``, as timm decides it."""
    return "original" if any(k.endswith("layers.0.downsample.reduction.weight") for k in keys) else "timm"


def load_vision_checkpoint(vision_encoder: nn.Module, path: str | os.PathLike) -> ImportReport:
    """Load an ImageNet checkpoint of the backbone alone into a :class:`~xvlm_lit.models.vision.VisionEncoder`.

    Swin files in the original or timm layout go through our Swin rules (windows resized, buffers and the
    classifier listed as unused). Other timm architectures first pass timm's own ``checkpoint_filter_fn`` for that
    architecture (foreign layouts such as OpenAI CLIP), then the same strict import.
    """
    path = str(path)
    sd = _unwrap(read_checkpoint(path), path)
    backbone = vision_encoder.backbone
    layout = "timm"
    if is_swin(backbone):
        layout = swin_layout(sd)
    else:
        filter_fn = getattr(sys.modules[type(backbone).__module__], "checkpoint_filter_fn", None)
        if filter_fn is not None:
            sd = filter_fn(sd, backbone)
    return import_state_dict(vision_encoder, sd, imagenet_keymap(vision_encoder, layout), source_name=path)


def _bert_files(path: str | os.PathLike) -> tuple[Path, dict[str, torch.Tensor]]:
    from xvlm_lit.models.pretrained_text import resolve_bert_dir  # models import checkpoints lazily, not back

    root = resolve_bert_dir(path)
    if (root / "model.safetensors").is_file():
        return root / "model.safetensors", read_safetensors(root / "model.safetensors")[0]
    if (root / "pytorch_model.bin").is_file():
        return root / "pytorch_model.bin", _unwrap(read_checkpoint(root / "pytorch_model.bin"), str(root))
    raise FileNotFoundError(f"model.bert_path={str(path)!r}: no model.safetensors or pytorch_model.bin there; give "
                            "a local BERT directory in transformers format (nothing is downloaded).")


def normalise_bert_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``bert.*`` / ``cls.*`` names whether the file holds a ``BertModel`` or a ``BertFor*`` (old TF-converted
    ``LayerNorm.gamma/beta`` become ``weight/bias``)."""
    out = {}
    for key, value in sd.items():
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))
        out[key if key.startswith(("bert.", "cls.")) else f"bert.{key}"] = value
    return out


def load_bert_dir(model: nn.Module, path: str | os.PathLike) -> ImportReport:
    """Initialise ``model``'s text layers, fusion layers (self-attention and FFN) and MLM head (when the directory
    has one) from a local BERT directory: BERT layer ``i`` feeds text layer ``i`` (``i < T``) or fusion layer
    ``i - T``. Cross-attention and the non-text parts keep their initialisation (``report.initialised``)."""
    file, raw = _bert_files(path)
    sd = normalise_bert_keys(raw)
    need = len(model.text_encoder.bert.encoder.layer) + len(model.fusion_encoder.layer)
    have = {int(m[1]) for k in sd if (m := re.match(r"bert\.encoder\.layer\.(\d+)\.", k))}
    if len(have) < need:
        raise ValueError(f"BERT at {path} has fewer than {need} layers (text "
                         f"{len(model.text_encoder.bert.encoder.layer)} + fusion {len(model.fusion_encoder.layer)})")
    return import_state_dict(model, sd, bert_dir_keymap(model), source_name=str(file))
