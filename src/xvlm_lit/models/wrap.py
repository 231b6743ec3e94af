"""The repeated blocks of X-VLM: the unit of FSDP sharding and of activation checkpointing."""

from __future__ import annotations

from timm.models.swin_transformer import SwinTransformerBlock
from torch import nn
from transformers.models.bert.modeling_bert import BertLayer

from xvlm_lit.models.fusion import FusionLayer


def block_classes() -> set[type[nn.Module]]:
    """Swin blocks, BERT text layers and fusion layers: ``auto_wrap_policy`` of ``conf/trainer/gpu_fsdp.yaml``."""
    return {SwinTransformerBlock, BertLayer, FusionLayer}
