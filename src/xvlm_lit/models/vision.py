"""Vision encoder adapter: any timm Swin or ViT -> ``[CLS, patch tokens]``."""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
from timm.layers import build_sincos2d_pos_embed
from torch import nn


class VisionEncoder(nn.Module):
    """Wraps a timm backbone so it returns ``[B, 1 + N, D]`` tokens.

    Swin has no CLS token: ours is the mean of the final patch tokens (after the final norm), as in X-VLM.
    ViT-style models keep their own CLS token and drop any other prefix token.

    Args:
        model_name: a timm architecture name (e.g. ``swin_base_patch4_window7_224``).
        image_size: square input resolution ``R``.
        drop_path_rate: stochastic depth rate.
        absolute_pos_embed: Swin only: add a learnable absolute position embedding ``[1, N0, C0]`` to the patch
            embeddings, initialised ``"learned"`` (truncated normal, std 0.02: the original Swin's ``ape`` option)
            or ``"sincos"`` (2-D sine-cosine); ``None`` (X-VLM's Swin-B) adds none. Swin's relative position bias
            does not say where a window lies in the image: a small Swin trained from scratch learns to regress
            boxes far sooner with a position code it has from the first step.
        **timm_kwargs: architecture overrides passed to ``timm.create_model`` (embed_dim, depths, ...).
    """

    def __init__(
        self,
        model_name: str,
        image_size: int,
        drop_path_rate: float = 0.0,
        absolute_pos_embed: str | None = None,
        **timm_kwargs,
    ) -> None:
        super().__init__()
        timm_kwargs = {k: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v
                       for k, v in timm_kwargs.items()}  # Hydra lists -> tuples
        kwargs = dict(num_classes=0, img_size=image_size, drop_path_rate=drop_path_rate, **timm_kwargs)
        self.backbone = timm.create_model(model_name, **kwargs)
        self.model_name = model_name
        self.absolute_pos_embed = self._make_absolute_pos_embed(absolute_pos_embed) if absolute_pos_embed else None
        self.image_size = image_size
        self.num_prefix_tokens = int(getattr(self.backbone, "num_prefix_tokens", 0))
        self.width = int(self.backbone.num_features)
        reduction = int(self.backbone.feature_info[-1]["reduction"])
        self.grid_size = image_size // reduction

    def _make_absolute_pos_embed(self, init: str) -> nn.Parameter:
        patch_embed = getattr(self.backbone, "patch_embed", None)
        if not hasattr(self.backbone, "layers") or patch_embed is None:
            raise ValueError(f"model.vision.absolute_pos_embed needs a Swin backbone, not {self.model_name!r} "
                             "(ViT-style models have their own position embedding)")
        rows, cols = patch_embed.grid_size
        dim = self.backbone.embed_dim
        if init == "sincos":
            return nn.Parameter(build_sincos2d_pos_embed([rows, cols], dim).unsqueeze(0))
        if init == "learned":
            return nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, rows * cols, dim), std=0.02))
        raise ValueError(f"model.vision.absolute_pos_embed={init!r}: use null, 'learned' or 'sincos'")

    def _swin_features(self, images: torch.Tensor) -> torch.Tensor:
        """Swin's forward_features with the absolute position embedding added after the patch embedding."""
        x = self.backbone.patch_embed(images)  # [B, h, w, C] (NHWC)
        x = x + self.absolute_pos_embed.view(1, *x.shape[1:])
        return self.backbone.norm(self.backbone.layers(x))

    @property
    def num_patches(self) -> int:
        return self.grid_size * self.grid_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images ``[B, 3, R, R]`` -> tokens ``[B, 1 + n*n, D]`` (index 0 is the CLS)."""
        if self.absolute_pos_embed is not None:
            feats = self._swin_features(images)
        else:
            feats = self.backbone.forward_features(images)
        if feats.dim() == 4:  # Swin: [B, h, w, D] (NHWC), already normed
            patches = feats.flatten(1, 2)
            return torch.cat([patches.mean(dim=1, keepdim=True), patches], dim=1)
        cls = feats[:, :1] if self.num_prefix_tokens else feats.mean(dim=1, keepdim=True)
        return torch.cat([cls, feats[:, self.num_prefix_tokens :]], dim=1)
