"""Key maps into :class:`~xvlm_lit.models.nlvr.NLVRModel` (SPEC section 8: "NLVR2 layer i >= 6 -> layers 2(i-6)+6
and 2(i-6)+7").

Read in our direction (our key <- source key), the pairing is a function: our fusion layers ``2k`` and ``2k+1``
both read pre-trained fusion layer ``k``; the pair's shared cross-attention K/V are one tensor (a tie group of the
importer), fed once. Sources, recognised by :func:`nlvr_keymap`:

- a pre-trained X-VLM, ours (Lightning / safetensors: ``fusion_encoder.layer.{k}``) or the reference's
  (``text_encoder.bert.encoder.layer.{t+k}``), or a reference fine-tuned single-image checkpoint
  (``text_encoder.encoder.layer.{t+k}``): pairs <- layer ``k``; the heads are new (``cls_head``, ``ta_head``);
  the MLM head, ``text_proj``, ``temp``, ``itm_head``, ``bbox_head`` are unused (``vision_proj`` too, unless the
  model is the text-assignment pre-stage, which reads it);
- an NLVR checkpoint, ours (``fusion_encoder.layer.{0..2n-1}``) or the reference's (``text_encoder.encoder.layer.
  {0..t+2n-1}``, from ``NLVR.py`` or ``NLVR_pretrain.py``): layer for layer; a head the source lacks is new, a head
  the model lacks is unused (fine-tuning from the text-assignment pre-stage drops ``ta_head`` and ``vision_proj``).
"""

from __future__ import annotations

import os
import re

from torch import nn

from xvlm_lit.checkpoints.importer import ImportReport, import_state_dict
from xvlm_lit.checkpoints.keymap import (
    APE_RULE,
    REBUILT_BUFFERS,
    KeepInit,
    KeyMap,
    Rename,
    Rule,
    Unused,
    vision_rules,
)
from xvlm_lit.checkpoints.sources import Source, read_source

_HEADS = ("cls_head", "ta_head", "vision_proj")
_XVLM_HEADS = r"(text_proj|itm_head|bbox_head)\..+|temp"


def _num_text_layers(model: nn.Module) -> int:
    return len(model.text_encoder.bert.encoder.layer)


def _num_pairs(model: nn.Module) -> int:
    return len(model.fusion_encoder.layer) // 2


def _model_heads(model: nn.Module) -> set[str]:
    return {h for h in _HEADS if hasattr(model, h)}


def _head_rules(model: nn.Module, paired_source: bool) -> tuple[list[Rule], list[Unused]]:
    """Heads the model has: loaded when the source has them (optional); heads the model lacks: unused."""
    have = _model_heads(model)
    rules: list[Rule] = []
    unused: list[Unused] = []
    for head in _HEADS:
        if head not in have:
            unused.append(Unused(rf"{head}\..+", f"{head} is not part of this model (another NLVR stage's head)"))
        elif paired_source or head == "vision_proj":
            rules.append(Rename(rf"{head}\.(.+)", rf"{head}.\1", optional=True))
        else:
            rules.append(KeepInit(rf"{head}\..+", f"{head} is new for NLVR2"))
    return rules, unused


def _vision(model: nn.Module, reference: bool) -> list[Rule]:
    if reference:
        return vision_rules(model.vision_encoder.backbone, "vision_encoder.backbone.", "vision_encoder.") + [APE_RULE]
    return [Rename(r"vision_encoder\.(.+)", r"vision_encoder.\1")]


def pretrained_to_nlvr_keymap(model: nn.Module, layout: str) -> KeyMap:
    """NLVR model <- a single-image X-VLM checkpoint: ``layout`` ``ours``, ``reference`` (pre-training names) or
    ``reference_finetuned`` (``text_encoder.X``, e.g. a retrieval checkpoint)."""
    t = _num_text_layers(model)
    if layout == "ours":
        text, layer, extra_unused = "text_encoder.bert.", "fusion_encoder.layer.{}.", [
            Unused(r"mlm_head\..+", "the MLM head is not used by NLVR2")]
    elif layout == "reference":
        text, layer, extra_unused = "text_encoder.bert.", "text_encoder.bert.encoder.layer.{}.", [
            Unused(r"text_encoder\.cls\..+", "the MLM head is not used by NLVR2")]
    elif layout == "reference_finetuned":
        text, layer, extra_unused = "text_encoder.", "text_encoder.encoder.layer.{}.", []
    else:
        raise ValueError(f"unknown source layout {layout!r}")
    offset = 0 if layout == "ours" else t
    rules: list[Rule] = _vision(model, layout != "ours")
    rules += [
        Rename(r"text_encoder\.bert\.(.+)", lambda m: f"{text}{m[1]}"),
        Rename(r"fusion_encoder\.layer\.(\d+)\.(.+)", lambda m: layer.format(offset + int(m[1]) // 2) + m[2]),
    ]
    heads, unused = _head_rules(model, paired_source=False)
    unused += [Unused(_XVLM_HEADS, "single-image X-VLM head, not used by NLVR2"), *extra_unused]
    return KeyMap(tuple(rules + heads), REBUILT_BUFFERS + tuple(unused), name=f"nlvr<-{layout}",
                  parts=(f"nlvr<-{layout}",))


def nlvr_checkpoint_keymap(model: nn.Module, reference: bool) -> KeyMap:
    """NLVR model <- an NLVR checkpoint (same number of paired layers): ours or the reference's
    (``text_encoder.encoder.layer.{t + j}`` is our fusion layer ``j``; no ``bert.`` level)."""
    t = _num_text_layers(model)
    rules: list[Rule] = _vision(model, reference)
    if reference:
        rules += [
            Rename(r"text_encoder\.bert\.(.+)", r"text_encoder.\1"),
            Rename(r"fusion_encoder\.layer\.(\d+)\.(.+)",
                   lambda m: f"text_encoder.encoder.layer.{t + int(m[1])}.{m[2]}"),
        ]
    else:
        rules += [Rename(r"(text_encoder|fusion_encoder)\.(.+)", r"\1.\2")]
    heads, unused = _head_rules(model, paired_source=True)
    name = "nlvr<-reference_nlvr" if reference else "nlvr<-ours_nlvr"
    return KeyMap(tuple(rules + heads), REBUILT_BUFFERS + tuple(unused), name=name, parts=(name,))


def _max_layer(keys, pattern: str) -> int:
    found = [int(m[1]) for k in keys if (m := re.match(pattern, k))]
    return max(found) if found else -1


def nlvr_keymap(model: nn.Module, source: Source) -> KeyMap:
    """The key map reading ``source`` (see the module docstring) into the NLVR ``model``."""
    t, n = _num_text_layers(model), _num_pairs(model)
    keys = source.state_dict.keys()
    if source.layout == "ours":
        top = _max_layer(keys, r"fusion_encoder\.layer\.(\d+)\.")
        if top == 2 * n - 1:
            return nlvr_checkpoint_keymap(model, reference=False)
        if top == n - 1:
            return pretrained_to_nlvr_keymap(model, "ours")
        raise ValueError(f"{source.path}: its fusion layers 0..{top} fit neither {n} pre-trained layers nor "
                         f"{2 * n} NLVR layers of this model")
    if source.layout == "reference_finetuned":
        top = _max_layer(keys, r"text_encoder\.encoder\.layer\.(\d+)\.")
        if top == t + 2 * n - 1:
            return nlvr_checkpoint_keymap(model, reference=True)
        if top == t + n - 1:
            return pretrained_to_nlvr_keymap(model, "reference_finetuned")
        raise ValueError(f"{source.path}: its BERT layers 0..{top} fit neither {t} + {n} pre-trained layers nor "
                         f"{t} + {2 * n} NLVR layers of this model")
    if source.layout == "reference":
        return pretrained_to_nlvr_keymap(model, "reference")
    raise ValueError(f"{source.path}: unknown layout {source.layout!r}")


def init_nlvr(model: nn.Module, path: str | os.PathLike) -> ImportReport:
    """Initialise the NLVR ``model`` from ``path`` (any file :func:`~xvlm_lit.checkpoints.init_from` reads),
    strictly: every model tensor loaded or named new, every source tensor loaded or named unused."""
    source = read_source(path)
    return import_state_dict(model, source.state_dict, nlvr_keymap(model, source), source_name=str(path))
