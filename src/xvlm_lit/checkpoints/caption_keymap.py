"""Key maps for captioning (SPEC section 8: "captioning ``text_encoder.`` -> ``text_decoder.``").

Our captioning model is the X-VLM itself (:mod:`xvlm_lit.models.caption`), so a pre-trained checkpoint, ours or
the reference's, loads with the generic maps. The reference's captioning code renames the whole BERT, MLM head
included, to ``text_decoder.`` (``text_decoder.bert.{embeddings,encoder.layer.0-11}``, ``text_decoder.cls.*``) and
keeps no contrastive, matching or box head; its files (``Captioning_pretrain.py``'s domain pre-stage, such as the
released ``lm_domain_pretrain.th``, and ``Captioning.py``'s fine-tuned ones) load through
:func:`reference_caption_keymap`: every key accounted for, our unused heads kept at their initialisation.
"""

from __future__ import annotations

import os

from torch import nn

from xvlm_lit.checkpoints.importer import ImportReport, import_state_dict
from xvlm_lit.checkpoints.keymap import APE_RULE, REBUILT_BUFFERS, KeepInit, KeyMap, Rule, bert_rules, vision_rules
from xvlm_lit.checkpoints.sources import Source, keymap_for, read_source

DECODER = "text_decoder."
HEADS = r"(vision_proj|text_proj|itm_head|bbox_head)\..+|temp"


def caption_rules(model: nn.Module) -> list[Rule]:
    """Text layers, fusion layers and the MLM head <- the reference's ``text_decoder.`` BERT (fusion layer ``i`` =
    decoder layer ``num_text_layers + i``); the heads captioning does not use stay at their initialisation."""
    t = len(model.text_encoder.bert.encoder.layer)
    return [*bert_rules(t, ref=DECODER), KeepInit(HEADS, "not part of a captioning model (the reference keeps none)")]


def reference_caption_keymap(model: nn.Module) -> KeyMap:
    """Our X-VLM <- a reference captioning checkpoint (``vision_encoder.*`` + ``text_decoder.*``)."""
    rules = (vision_rules(model.vision_encoder.backbone, "vision_encoder.backbone.", "vision_encoder.") + [APE_RULE]
             + caption_rules(model))
    return KeyMap(tuple(rules), REBUILT_BUFFERS, name="reference_caption", parts=("reference_caption",))


def is_caption_layout(keys) -> bool:
    """True for the reference captioning layout (its BERT under ``text_decoder.``)."""
    return any(k.startswith(DECODER) for k in keys)


def caption_keymap(model: nn.Module, source: Source) -> KeyMap:
    """The reference captioning map for ``text_decoder.`` files, else the generic one for ``source``'s layout."""
    return reference_caption_keymap(model) if is_caption_layout(source.state_dict) else keymap_for(model, source)


def init_caption(model: nn.Module, path: str | os.PathLike) -> ImportReport:
    """Initialise the captioning X-VLM from any checkpoint (a pre-trained X-VLM, ours or the reference's, our
    captioning runs, or the reference's captioning files), strictly."""
    source = read_source(path)
    return import_state_dict(model, source.state_dict, caption_keymap(model, source), source_name=str(path))
