"""Name mappings between our state dict and other layouts, as ordered lists of small composable rules.

Every rule is read in one direction: from *our* key to the *source* key that feeds it. That direction is a
function even when one source tensor initialises several of ours (NLVR2's paired layers, VQA's decoder copied
from the fusion layers), so a task-specific mapping is a few rules put in front of the base ones
(:meth:`KeyMap.with_rules`), never a rewrite. Export uses the same rules (our key -> reference key).

- :class:`Rename`: our key (regex) -> source key (template or function of the match).
- :class:`KeepInit`: our key deliberately not loaded (stays at its initialisation), with the reason.
- :class:`Unused`: source key deliberately not loaded, with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from timm.models.swin_transformer import SwinTransformer
from torch import nn

Target = str | Callable[[re.Match], str]


@dataclass(frozen=True)
class Rename:
    """Our key matching ``pattern`` is loaded from ``target`` (a ``re`` template such as ``r"bert.\\1"`` or a
    function of the match). ``optional``: a source without that key leaves ours at its initialisation."""

    pattern: str
    target: Target
    optional: bool = False

    def source_key(self, key: str) -> str | None:
        m = re.fullmatch(self.pattern, key)
        if m is None:
            return None
        return self.target(m) if callable(self.target) else m.expand(self.target)


@dataclass(frozen=True)
class KeepInit:
    """Our key matching ``pattern`` is not loaded from the source."""

    pattern: str
    reason: str

    def matches(self, key: str) -> bool:
        return re.fullmatch(self.pattern, key) is not None


@dataclass(frozen=True)
class Unused:
    """A source key matching ``pattern`` (and ``accept(match)`` when given) is intentionally not loaded."""

    pattern: str
    reason: str
    accept: Callable[[re.Match], bool] | None = None

    def matches(self, key: str) -> bool:
        m = re.fullmatch(self.pattern, key)
        return m is not None and (self.accept is None or self.accept(m))


Rule = Rename | KeepInit


@dataclass(frozen=True)
class KeyMap:
    """Ordered rules for our keys (first match wins) and the source keys intentionally left unused."""

    rules: tuple[Rule, ...]
    unused: tuple[Unused, ...] = ()
    name: str = "keymap"
    #: filled by :meth:`with_rules`: names of the mappings composed so far, for reports
    parts: tuple[str, ...] = field(default=())

    def with_rules(self, rules: Sequence[Rule] = (), unused: Sequence[Unused] = (), name: str = "") -> KeyMap:
        """A new map where ``rules`` take precedence over the existing ones and ``unused`` are added."""
        return replace(self, rules=tuple(rules) + self.rules, unused=self.unused + tuple(unused),
                       parts=self.parts + ((name,) if name else ()))

    def rule_for(self, key: str) -> Rule | None:
        for rule in self.rules:
            if isinstance(rule, Rename):
                if rule.source_key(key) is not None:
                    return rule
            elif rule.matches(key):
                return rule
        return None

    def source_key(self, key: str) -> str | None:
        """The source key feeding our ``key`` (None for :class:`KeepInit` or no rule)."""
        rule = self.rule_for(key)
        return rule.source_key(key) if isinstance(rule, Rename) else None

    def unused_reason(self, source_key: str) -> str | None:
        for u in self.unused:
            if u.matches(source_key):
                return u.reason
        return None


# --------------------------------------------------------------------------------------------------- building blocks
def _esc(prefix: str) -> str:
    return re.escape(prefix)


def swin_rules(ours: str, ref: str, layout: str = "original") -> list[Rule]:
    """timm Swin under ``ours`` <- Swin under ``ref``.

    ``layout="original"`` (the reference's and Microsoft's): patch merging at the *end* of stages 0..S-2
    (``layers.{s}.downsample``), timm's at the *start* of stages 1..S-1 (``layers.{s+1}.downsample``).
    ``layout="timm"``: same names.
    """
    if layout not in ("original", "timm"):
        raise ValueError(f"unknown Swin layout {layout!r}: use 'original' or 'timm'")
    rules: list[Rule] = []
    if layout == "original":
        rules.append(Rename(rf"{_esc(ours)}layers\.(\d+)\.downsample\.(.+)",
                            lambda m: f"{ref}layers.{int(m[1]) - 1}.downsample.{m[2]}"))
    rules.append(Rename(rf"{_esc(ours)}(.+)", lambda m: f"{ref}{m[1]}"))
    return rules


def prefix_rules(ours: str, ref: str) -> list[Rule]:
    """Same names below two prefixes (timm ViT/DeiT, heads)."""
    return [Rename(rf"{_esc(ours)}(.+)", lambda m: f"{ref}{m[1]}")]


def bert_rules(num_text_layers: int, ref: str = "text_encoder.", optional_mlm: bool = False) -> list[Rule]:
    """Our text encoder, fusion layers and MLM head <- one BERT under ``ref`` (``{ref}bert.*``, ``{ref}cls.*``).

    Fusion layer ``i`` is BERT layer ``num_text_layers + i``, same sub-module names (cross-attention included).
    """
    t = num_text_layers
    return [
        Rename(r"text_encoder\.bert\.(.+)", lambda m: f"{ref}bert.{m[1]}"),
        Rename(r"fusion_encoder\.layer\.(\d+)\.(.+)", lambda m: f"{ref}bert.encoder.layer.{t + int(m[1])}.{m[2]}"),
        Rename(r"mlm_head\.cls\.(.+)", lambda m: f"{ref}cls.{m[1]}", optional=optional_mlm),
    ]


HEAD_RULES: list[Rule] = [Rename(r"(vision_proj|text_proj|itm_head|bbox_head)\.(.+)", r"\1.\2"),
                          Rename(r"temp", "temp")]

#: Swin's optional absolute position embedding (``ape``) sits beside our timm backbone, under the original name
#: (optional: a checkpoint without one leaves ours at its initialisation, and the import report says so)
APE_RULE: Rule = Rename(r"vision_encoder\.absolute_pos_embed", "vision_encoder.absolute_pos_embed", optional=True)

#: buffers every Swin/BERT file may carry that our modules rebuild for their own geometry
REBUILT_BUFFERS: tuple[Unused, ...] = (
    Unused(r".*\.relative_position_index", "Swin buffer, rebuilt by timm for the model's window size"),
    Unused(r".*\.attn_mask", "Swin shifted-window mask buffer, rebuilt by timm for the model's resolution"),
    Unused(r".*embeddings\.position_ids", "BERT position-id buffer (arange), rebuilt by transformers"),
)


def _num_text_layers(model: nn.Module) -> int:
    return len(model.text_encoder.bert.encoder.layer)


def is_swin(backbone: nn.Module) -> bool:
    """A timm Swin (v1), the reference's backbone; other timm models (ViT/DeiT) keep their names."""
    return isinstance(backbone, SwinTransformer)


def vision_rules(backbone: nn.Module, ours: str, ref: str, layout: str = "original") -> list[Rule]:
    return swin_rules(ours, ref, layout) if is_swin(backbone) else prefix_rules(ours, ref)


# ------------------------------------------------------------------------------------------------------ the layouts
def reference_keymap(model: nn.Module) -> KeyMap:
    """Our :class:`~xvlm_lit.models.xvlm.XVLM` <- the reference X-VLM pre-training layout (SPEC section 8)."""
    rules = (vision_rules(model.vision_encoder.backbone, "vision_encoder.backbone.", "vision_encoder.")
             + [APE_RULE] + bert_rules(_num_text_layers(model)) + HEAD_RULES)
    return KeyMap(tuple(rules), REBUILT_BUFFERS, name="reference", parts=("reference",))


def reference_finetuned_keymap(model: nn.Module) -> KeyMap:
    """Our XVLM <- a reference *fine-tuned* checkpoint (retrieval, grounding, ...): the reference renames
    ``text_encoder.bert.X`` to ``text_encoder.X`` and drops ``text_encoder.cls.*`` when fine-tuning (SPEC section 8).
    The MLM head stays at its initialisation, and so does any head the task did not train (e.g. ``bbox_head`` of a
    retrieval model); the import report lists them."""
    t = _num_text_layers(model)
    bert = [
        Rename(r"text_encoder\.bert\.(.+)", lambda m: f"text_encoder.{m[1]}"),
        Rename(r"fusion_encoder\.layer\.(\d+)\.(.+)", lambda m: f"text_encoder.encoder.layer.{t + int(m[1])}.{m[2]}"),
        KeepInit(r"mlm_head\..+", "fine-tuned reference checkpoints carry no MLM head"),
    ]
    heads = [Rename(r"(vision_proj|text_proj|itm_head|bbox_head)\.(.+)", r"\1.\2", optional=True),
             Rename(r"temp", "temp", optional=True)]
    rules = (vision_rules(model.vision_encoder.backbone, "vision_encoder.backbone.", "vision_encoder.")
             + [APE_RULE] + bert + heads)
    return KeyMap(tuple(rules), REBUILT_BUFFERS, name="reference_finetuned", parts=("reference_finetuned",))


def ours_keymap(model: nn.Module | None = None) -> KeyMap:
    """Our layout <- our layout (a Lightning checkpoint or our safetensors export)."""
    return KeyMap((Rename(r"(.+)", r"\1"),), REBUILT_BUFFERS, name="ours", parts=("ours",))


def bert_dir_keymap(model: nn.Module) -> KeyMap:
    """Our text/fusion/MLM parts <- a BERT directory (keys normalised to ``bert.*`` / ``cls.*``).

    Cross-attention and everything outside the BERT stay at their initialisation; the MLM head is loaded when
    the directory has one. BERT's pooler, NSP head and layers beyond text + fusion are unused.
    """
    used = _num_text_layers(model) + len(model.fusion_encoder.layer)
    rules: list[Rule] = [
        KeepInit(r"fusion_encoder\.layer\.\d+\.crossattention\..+", "cross-attention is new in X-VLM"),
        KeepInit(r"(vision_encoder|vision_proj|text_proj|itm_head|bbox_head)\..+|temp", "not part of a BERT"),
    ]
    rules += bert_rules(_num_text_layers(model), ref="", optional_mlm=True)
    unused = REBUILT_BUFFERS + (
        Unused(r"bert\.pooler\..+", "BERT pooler (X-VLM has none)"),
        Unused(r"cls\.seq_relationship\..+", "BERT next-sentence head"),
        Unused(r"bert\.encoder\.layer\.(\d+)\..+", f"BERT layer beyond the {used} used (text + fusion)",
               accept=lambda m: int(m[1]) >= used),
    )
    return KeyMap(tuple(rules), unused, name="bert", parts=("bert",))


def imagenet_keymap(vision_encoder: nn.Module, layout: str = "original") -> KeyMap:
    """Our :class:`~xvlm_lit.models.vision.VisionEncoder` (keys ``backbone.*``) <- an ImageNet checkpoint of the
    backbone alone (Swin in original or timm layout, or a timm ViT); its classifier is unused."""
    ape = Rename("absolute_pos_embed", "absolute_pos_embed", optional=True)
    rules = vision_rules(vision_encoder.backbone, "backbone.", "", layout) + [ape]
    unused = REBUILT_BUFFERS + (Unused(r"head(_dist)?\..+", "ImageNet classifier (our backbone has no head)"),)
    return KeyMap(tuple(rules), unused, name="imagenet", parts=("imagenet",))
