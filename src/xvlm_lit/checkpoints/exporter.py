"""Export our weights: to the reference X-VLM layout (``{"model": state_dict}``, loadable by the reference code and
by :func:`~xvlm_lit.checkpoints.importer.init_from`), or to safetensors in our own layout."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xvlm_lit.checkpoints.io import write_safetensors, write_torch
from xvlm_lit.checkpoints.keymap import KeyMap, is_swin, reference_keymap
from xvlm_lit.checkpoints.resize import swin_reference_buffers

FORMAT_TAG = "xvlm_lit"


def reference_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Buffers the reference's state dict carries and ours does not (our module names): the Swin
    ``relative_position_index`` / ``attn_mask`` for the model's windows and resolution, and BERT's
    ``embeddings.position_ids``."""
    out: dict[str, torch.Tensor] = {}
    backbone = model.vision_encoder.backbone
    if is_swin(backbone):
        out.update(swin_reference_buffers(backbone, "vision_encoder.backbone."))
    max_pos = model.text_encoder.bert.config.max_position_embeddings
    out["text_encoder.bert.embeddings.position_ids"] = torch.arange(max_pos).unsqueeze(0)
    return out


def reference_state_dict(model: nn.Module, keymap: KeyMap | None = None) -> dict[str, torch.Tensor]:
    """Our weights under the reference names (SPEC section 8), tied tensors kept shared, plus the reference's
    buffers. Raises ``ValueError`` naming any key without a reference name or two keys colliding on one."""
    keymap = keymap or reference_keymap(model)
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    entries = [(k, v.detach()) for k, v in model.state_dict(keep_vars=True).items()]
    entries += list(reference_buffers(model).items())
    for key, value in entries:
        ref = keymap.source_key(key)
        if ref is None:
            raise ValueError(f"model key {key!r} has no name in the {keymap.name} layout (rule: "
                             f"{keymap.rule_for(key)})")
        if ref in out and not (out[ref] is value or torch.equal(out[ref], value.cpu())):
            raise ValueError(f"model keys {origin[ref]!r} and {key!r} both map to {ref!r} with different values")
        out[ref], origin[ref] = value.cpu(), key
    return out


def ours_state_dict(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Our persistent tensors with each tied tensor stored once, and ``{alias: stored key}`` for the ties."""
    tensors: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[int, str] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        if id(value) in seen:
            tied[key] = seen[id(value)]
            continue
        seen[id(value)] = key
        tensors[key] = value.detach()
    return tensors, tied


def save_reference(model: nn.Module, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
    """``torch.save({"model": reference_state_dict(model), **extra}, path)`` (extra: plain values only)."""
    return write_torch({"model": reference_state_dict(model), **dict(extra or {})}, path)


def save_safetensors(model: nn.Module, path: str | os.PathLike,
                     metadata: Mapping[str, Any] | None = None) -> Path:
    """Our layout as safetensors; metadata records ``format``, ``layout`` and the tied aliases."""
    tensors, tied = ours_state_dict(model)
    meta = {"format": FORMAT_TAG, "layout": "ours", "tied": tied, **dict(metadata or {})}
    return write_safetensors(tensors, path, meta)
