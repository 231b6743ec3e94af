"""X-VLM composed from injected vision, text and fusion encoders plus its heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xvlm_lit.models.attention import cpu_attention_backend
from xvlm_lit.models.fusion import FusionEncoder
from xvlm_lit.models.heads import MLMHead, mlp_head
from xvlm_lit.models.text import TextEncoder
from xvlm_lit.models.vision import VisionEncoder

#: parameter-name prefixes / substrings of the parts X-VLM adds to its encoders (trained at a higher lr)
NEW_PART_PREFIXES = ("vision_proj.", "text_proj.", "temp", "itm_head.", "bbox_head.")
NEW_PART_SUBSTRINGS = (".crossattention.",)


class XVLM(nn.Module):
    """The X-VLM network (no losses inside: those are plugins in :mod:`xvlm_lit.losses`).

    Args:
        vision: image encoder returning ``[B, 1+N, Dv]``.
        text: the first BERT layers.
        fusion: the remaining BERT layers with cross-attention (``vision_width`` must equal ``vision.width``).
        embed_dim: contrastive feature size.
        temp: initial contrastive temperature.
        grad_checkpointing: recompute every Swin stage / BERT layer in backward (less activation memory, ~30% more
            time); a switch: ``+model.grad_checkpointing=true``.
        compile: ``torch.compile`` the three encoders in place (parameter names unchanged); ``+model.compile=true``.

    Building reads no file: weights are loaded by :func:`xvlm_lit.build.build_model` (``model.bert_path``,
    ``model.init_from``) or :mod:`xvlm_lit.checkpoints`.
    """

    def __init__(self, vision: VisionEncoder, text: TextEncoder, fusion: FusionEncoder, embed_dim: int = 256,
                 temp: float = 0.07, grad_checkpointing: bool = False, compile: bool = False) -> None:
        super().__init__()
        if fusion.vision_width != vision.width:
            raise ValueError(f"model.fusion.vision_width={fusion.vision_width} but the vision encoder "
                             f"{vision.model_name} outputs {vision.width}-d tokens: set them equal")
        self.vision_encoder, self.text_encoder, self.fusion_encoder = vision, text, fusion
        width = text.spec.hidden_size
        self.vision_proj = nn.Linear(vision.width, embed_dim)
        self.text_proj = nn.Linear(width, embed_dim)
        self.temp = nn.Parameter(torch.tensor(float(temp)))
        self.itm_head = mlp_head(width, 2)
        self.bbox_head = mlp_head(width, 4)
        self.mlm_head = MLMHead(text.spec, text.word_embeddings)
        if grad_checkpointing:
            self.set_grad_checkpointing(True)
        if compile:
            self.compile_encoders()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing of the vision stages (timm), text layers (transformers) and fusion layers."""
        backbone = self.vision_encoder.backbone
        if hasattr(backbone, "set_grad_checkpointing"):
            backbone.set_grad_checkpointing(enable)
        bert = self.text_encoder.bert
        if enable:
            bert.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            bert.activation_checkpointing_disable()
        self.fusion_encoder.grad_checkpointing = enable

    def compile_encoders(self, **kwargs) -> None:
        """``nn.Module.compile`` (in place: the state dict keeps its names) of the vision, text and fusion encoders."""
        for encoder in (self.vision_encoder, self.text_encoder, self.fusion_encoder):
            encoder.compile(**kwargs)

    @property
    def image_size(self) -> int:
        return self.vision_encoder.image_size

    @property
    def grid_size(self) -> int:
        return self.vision_encoder.grid_size

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images ``[B, 3, R, R]`` -> ``[B, 1+N, Dv]``."""
        with cpu_attention_backend(images.device):
            return self.vision_encoder(images)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[T, L]`` ids and mask -> ``[T, L, H]`` (text layers only)."""
        with cpu_attention_backend(input_ids.device):
            return self.text_encoder(input_ids, attention_mask)

    def fuse(self, text_hidden: torch.Tensor, text_mask: torch.Tensor, image: torch.Tensor,
             image_mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """Fusion layers: ``[T, L, H]`` text attending ``[T, Nv, Dv]`` image tokens -> ``[T, L, H]``."""
        with cpu_attention_backend(text_hidden.device):
            return self.fusion_encoder(text_hidden, text_mask, image, image_mask, causal)

    def image_feat(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """``[T, 1+N, Dv]`` -> L2-normalised ``[T, E]`` from token 0."""
        return F.normalize(self.vision_proj(image_tokens[:, 0]), dim=-1)

    def text_feat(self, text_hidden: torch.Tensor) -> torch.Tensor:
        """``[T, L, H]`` -> L2-normalised ``[T, E]`` from token 0."""
        return F.normalize(self.text_proj(text_hidden[:, 0]), dim=-1)

    def itm_logits(self, fused: torch.Tensor) -> torch.Tensor:
        """fused ``[T, L, H]`` -> ``[T, 2]`` (index 1 = match)."""
        return self.itm_head(fused[:, 0])

    def predict_box(self, fused: torch.Tensor) -> torch.Tensor:
        """fused ``[T, L, H]`` -> normalised (cx, cy, w, h) ``[T, 4]`` in (0, 1)."""
        return self.bbox_head(fused[:, 0]).sigmoid()

    def mlm_logits(self, fused: torch.Tensor, masked_pos: torch.Tensor) -> torch.Tensor:
        """fused ``[T, L, H]``, masked_pos ``[T, M]`` -> logits ``[T, M, V]`` at the masked positions only."""
        picked = torch.gather(fused, 1, masked_pos[..., None].expand(-1, -1, fused.shape[-1]))
        return self.mlm_head(picked)

    def is_new_parameter(self, name: str) -> bool:
        """True for the parts trained at the higher lr (cross-attention, projections, temp, ITM/box heads)."""
        return name.startswith(NEW_PART_PREFIXES) or any(s in name for s in NEW_PART_SUBSTRINGS)
