"""Checkpoint imports into :class:`~xvlm_lit.models.vqa.XVLMForVQA`: task rules in front of the base key maps.

Three kinds of source, recognised from the keys (:func:`vqa_keymap`):

- a **pre-trained** X-VLM, ours (Lightning ``.ckpt``, safetensors) or the reference's (``.th``): the encoders
  load as usual; answer decoder layer ``i`` <- fusion layer ``i`` (BERT layer ``num_text_layers + i``), except its
  cross-attention keys/values, which stay at their initialisation when the pre-trained ones read vision tokens of
  another width (the reference deletes them and trains the new ones at 2x lr); the decoder's embeddings <- the
  text embeddings and its LM head <- the MLM head (copies: the decoder owns them afterwards). The contrastive,
  matching and box heads of the source are intentionally unused (the reference's VQA model has none);
- the reference's **fine-tuned VQA** checkpoint (``text_encoder.X`` without ``bert.``, ``text_decoder.bert.X``,
  ``text_decoder.cls.X``): every tensor, the decoder's cross-attention included;
- **ours after VQA fine-tuning** (keys under ``answer_decoder.``): the identity.

``python -m xvlm_lit.train experiment=vqa`` applies this through ``task.init_from`` when fitting starts;
``model.init_from``, ``python -m xvlm_lit.eval`` and ``xvlm_lit.load`` pick it too (:mod:`xvlm_lit.checkpoints.auto`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from xvlm_lit.checkpoints.importer import ImportReport, import_state_dict
from xvlm_lit.checkpoints.keymap import KeepInit, KeyMap, Rename, Rule, Unused, ours_keymap
from xvlm_lit.checkpoints.sources import Source, detect_layout, keymap_for, read_source

DECODER = "answer_decoder."
#: the reference fine-tuned VQA layout's decoder prefix
REFERENCE_DECODER = "text_decoder."

UNUSED_HEADS = Unused(r"(vision_proj|text_proj|itm_head|bbox_head)\..+|temp",
                      "VQA has no contrastive, matching or box head (the reference's VQA model builds none)")
UNUSED_TOKEN_TYPES = Unused(r".*embeddings\.token_type_ids", "BERT token-type buffer (zeros), rebuilt by transformers")


def _num_text_layers(model: nn.Module) -> int:
    return len(model.text_encoder.bert.encoder.layer)


def _cross_kv_rule(model: nn.Module) -> list[Rule]:
    if not getattr(model, "new_cross_kv", True):
        return []  # same widths: the reference copies the pre-trained keys/values too
    return [KeepInit(r"answer_decoder\.layer\.\d+\.crossattention\.self\.(key|value)\.(weight|bias)",
                     "new: the decoder's cross-attention reads the question states, not vision tokens "
                     "(re-initialised as in the reference, trained at the higher lr)")]


def pretrained_rules(model: nn.Module, layout: str) -> tuple[list[Rule], list[Unused]]:
    """Decoder rules for a pre-trained source in ``layout`` ``"ours"`` or ``"reference"``."""
    t = _num_text_layers(model)
    fusion = len(model.fusion_encoder.layer)
    depth = len(model.answer_decoder.layer)
    if depth > fusion:
        raise ValueError(f"the answer decoder has {depth} layers but the model only {fusion} fusion layers to "
                         "initialise them from: set model.decoder_layers <= the fusion depth (reference: equal)")
    if layout == "ours":
        layer = lambda m: f"fusion_encoder.layer.{m[1]}.{m[2]}"  # noqa: E731
        head = r"mlm_head.cls.\1"
    elif layout == "reference":
        layer = lambda m: f"text_encoder.bert.encoder.layer.{t + int(m[1])}.{m[2]}"  # noqa: E731
        head = r"text_encoder.cls.\1"
    else:
        raise ValueError(f"no pre-trained VQA rules for layout {layout!r}")
    rules = _cross_kv_rule(model) + [
        Rename(r"answer_decoder\.layer\.(\d+)\.(.+)", layer),
        Rename(r"answer_decoder\.embeddings\.(.+)", r"text_encoder.bert.embeddings.\1"),
        Rename(r"answer_decoder\.lm_head\.cls\.(.+)", head),
    ]
    return rules, [UNUSED_HEADS]


def finetuned_rules(model: nn.Module) -> tuple[list[Rule], list[Unused]]:
    """Decoder rules for the reference's fine-tuned VQA layout (``text_decoder`` = a ``BertLMHeadModel``)."""
    rules = [
        Rename(r"answer_decoder\.layer\.(\d+)\.(.+)", r"text_decoder.bert.encoder.layer.\1.\2"),
        Rename(r"answer_decoder\.embeddings\.(.+)", r"text_decoder.bert.embeddings.\1"),
        Rename(r"answer_decoder\.lm_head\.cls\.(.+)", r"text_decoder.cls.\1"),
    ]
    return rules, [UNUSED_TOKEN_TYPES]


def vqa_keymap(model: nn.Module, source: Source) -> KeyMap:
    """The key map reading ``source`` into an :class:`~xvlm_lit.models.vqa.XVLMForVQA` (module docstring)."""
    keys = source.state_dict.keys()
    base = keymap_for(model, source)
    if source.layout == "ours":
        if any(k.startswith(DECODER) for k in keys):
            return ours_keymap(model)
        rules, unused = pretrained_rules(model, "ours")
        name = "vqa_from_pretrained"
    elif source.layout == "reference":
        rules, unused = pretrained_rules(model, "reference")
        name = "vqa_from_pretrained"
    elif source.layout == "reference_finetuned":
        if not any(k.startswith(REFERENCE_DECODER) for k in keys):
            raise ValueError(f"{source.path}: a reference fine-tuned checkpoint of another task (no "
                             f"'{REFERENCE_DECODER}' keys, no MLM head to initialise the answer decoder's LM head "
                             "from): start VQA from a pre-trained checkpoint")
        rules, unused = finetuned_rules(model)
        name = "vqa_reference_finetuned"
    else:
        raise ValueError(f"{source.path}: unknown layout {source.layout!r}")
    return base.with_rules(rules, unused + [UNUSED_TOKEN_TYPES], name=name)


def import_vqa_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                          source_name: str = "<state dict>") -> ImportReport:
    """Strictly import an in-memory state dict (any of the three kinds; e.g. ``XVLM().state_dict()``)."""
    sd = dict(state_dict)
    source = Source(sd, detect_layout(sd), "state_dict", source_name)
    return import_state_dict(model, sd, vqa_keymap(model, source), source_name=source_name)


def init_vqa_from(model: nn.Module, path: str | os.PathLike) -> ImportReport:
    """Initialise ``model`` from a checkpoint file of any of the three kinds (strict; the report names every
    tensor kept at its initialisation and every source tensor left unused)."""
    source = read_source(path)
    return import_state_dict(model, source.state_dict, vqa_keymap(model, source), source_name=str(path))
