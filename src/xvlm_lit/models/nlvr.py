"""NLVR2: X-VLM reasoning over two images (SPEC section 6).

The fusion half of the BERT doubles: each pre-trained fusion layer becomes a *pair* of layers (both initialised
from it, see :mod:`xvlm_lit.checkpoints.nlvr_keymap`). As in the reference (``models/model_nlvr.py`` with
``xbert.BertLayer``), the text runs through the pairs one layer after the other: the even layer of a pair
cross-attends image 0, the odd one image 1, and the odd layer reads the even one's output (there is no separate
merge: the CLS after the last odd layer has seen both images). Only the cross-attention *key* and *value*
projections of a pair are shared (one ``nn.Linear`` module, so one tensor and one gradient); its query, output
dense/LayerNorm, self-attention and FFN are separate parameters that start equal.

Heads: ``cls_head`` (Linear H->2H, LayerNorm, GELU, Linear 2H->2 on the CLS; index 1 = "true") for fine-tuning, or,
for the text-assignment domain pre-stage (reference ``model_nlvr_pretrain.py``), ``vision_proj`` (image feature
that draws the image pairs) and ``ta_head`` (Linear H->3: the text belongs to image 0, image 1 or neither).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from xvlm_lit.models.fusion import FusionLayer
from xvlm_lit.models.heads import mlp_head
from xvlm_lit.models.text import BertSpec, TextEncoder
from xvlm_lit.models.vision import VisionEncoder

#: labels of the text-assignment pre-stage
TA_LEFT, TA_RIGHT, TA_NEITHER = 0, 1, 2


class PairedFusionEncoder(nn.Module):
    """``2 * num_layers`` fusion layers in pairs ``(2k, 2k+1)``; layer ``2k`` attends image 0, ``2k+1`` image 1.

    Args:
        bert: BERT geometry.
        num_layers: number of *pre-trained* fusion layers (pairs), e.g. 6 for X-VLM base (12 layers here).
        vision_width: ``Dv`` of the vision tokens.
    """

    def __init__(self, bert: BertSpec | Mapping, num_layers: int, vision_width: int) -> None:
        super().__init__()
        spec = BertSpec.of(bert)
        self.vision_width, self.num_pairs = vision_width, num_layers
        self.layer = nn.ModuleList(FusionLayer(spec, vision_width) for _ in range(2 * num_layers))
        for k in range(num_layers):
            even, odd = self.layer[2 * k].crossattention.self, self.layer[2 * k + 1].crossattention.self
            odd.key, odd.value = even.key, even.value  # one module: one weight/bias tensor, one gradient

    def forward(self, text_hidden: torch.Tensor, text_mask: torch.Tensor | None, image0: torch.Tensor,
                image1: torch.Tensor, image0_mask: torch.Tensor | None = None,
                image1_mask: torch.Tensor | None = None) -> torch.Tensor:
        """text_hidden ``[B, L, H]``, image0/image1 ``[B, Nv, Dv]`` (masks ``[B, Nv]``, None = all) -> ``[B, L, H]``."""
        hidden = text_hidden
        images = ((image0, image0_mask), (image1, image1_mask))
        for i, layer in enumerate(self.layer):
            image, mask = images[i % 2]
            hidden = layer(hidden, text_mask, image, mask)
        return hidden


class NLVRModel(nn.Module):
    """X-VLM for NLVR2: vision encoder, text layers, paired fusion layers, and the task heads.

    Args:
        vision, text, fusion: as :class:`~xvlm_lit.models.xvlm.XVLM`, with a :class:`PairedFusionEncoder`.
        embed_dim: size of ``vision_proj`` (text-assignment pre-stage only).
        temp: the fixed temperature of the image-image similarity that draws the pre-stage's image pairs (the
            reference's 0.07); a constant, not trained. Named like XVLM's so the node composes from conf/model.
        text_assignment: build the pre-stage heads (``vision_proj``, ``ta_head``) instead of ``cls_head``.
    """

    def __init__(self, vision: VisionEncoder, text: TextEncoder, fusion: PairedFusionEncoder, embed_dim: int = 256,
                 temp: float = 0.07, text_assignment: bool = False) -> None:
        super().__init__()
        if fusion.vision_width != vision.width:
            raise ValueError(f"model.fusion.vision_width={fusion.vision_width} but the vision encoder "
                             f"{vision.model_name} outputs {vision.width}-d tokens: set them equal")
        if not isinstance(fusion, PairedFusionEncoder):
            raise TypeError("NLVRModel needs model.fusion._target_=xvlm_lit.models.nlvr.PairedFusionEncoder")
        self.vision_encoder, self.text_encoder, self.fusion_encoder = vision, text, fusion
        width = text.spec.hidden_size
        self.pairing_temp = float(temp)
        self.text_assignment = bool(text_assignment)
        if self.text_assignment:
            self.vision_proj = nn.Linear(vision.width, embed_dim)
            self.ta_head = nn.Linear(width, 3)
        else:
            self.cls_head = mlp_head(width, 2)

    @property
    def image_size(self) -> int:
        return self.vision_encoder.image_size

    @property
    def grid_size(self) -> int:
        return self.vision_encoder.grid_size

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images ``[B, 3, R, R]`` -> ``[B, 1+N, Dv]``."""
        return self.vision_encoder(images)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[T, L]`` -> ``[T, L, H]`` (text layers only)."""
        return self.text_encoder(input_ids, attention_mask)

    def fuse_pair(self, text_hidden: torch.Tensor, text_mask: torch.Tensor, image0: torch.Tensor,
                  image1: torch.Tensor) -> torch.Tensor:
        """Text ``[T, L, H]`` through the pairs attending image tokens ``[T, Nv, Dv]`` each -> ``[T, L, H]``."""
        return self.fusion_encoder(text_hidden, text_mask, image0, image1)

    def image_feat(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """``[T, 1+N, Dv]`` -> L2-normalised ``[T, E]`` (pre-stage only)."""
        return F.normalize(self.vision_proj(image_tokens[:, 0]), dim=-1)

    def pair_logits(self, images0: torch.Tensor, images1: torch.Tensor, text_ids: torch.Tensor,
                    text_mask: torch.Tensor) -> torch.Tensor:
        """images ``[T, 3, R, R]`` each, text ``[T, L]`` -> ``cls_head`` logits ``[T, 2]`` (index 1 = true).

        Both images go through the vision encoder in one call (as the reference concatenates them)."""
        tokens = self.encode_image(torch.cat([images0, images1]))
        image0, image1 = tokens.split(images0.shape[0])
        fused = self.fuse_pair(self.encode_text(text_ids, text_mask), text_mask, image0, image1)
        return self.cls_head(fused[:, 0])

    def is_new_parameter(self, name: str) -> bool:
        """The reference trains only the new head at ``lr_mult`` (``init_params``: ``cls_head`` or ``ta_head``);
        the cross-attention was trained in pre-training and keeps the base lr here."""
        return name.startswith(("cls_head.", "ta_head."))
