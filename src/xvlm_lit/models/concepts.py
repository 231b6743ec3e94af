"""Multi-grained visual concepts: a box selects the patches it touches; a region is ``[region_CLS, patches]``."""

from __future__ import annotations

import torch

from xvlm_lit.geometry import boxes_to_patch_mask

__all__ = ["boxes_to_patch_mask", "gather_images", "region_tokens"]


def gather_images(image_embeds: torch.Tensor, image_index: torch.Tensor | None) -> torch.Tensor:
    """image_embeds ``[B, 1+N, D]``, image_index ``[T]`` (text -> image) -> ``[T, 1+N, D]``."""
    return image_embeds if image_index is None else image_embeds.index_select(0, image_index)


def region_tokens(image_embeds: torch.Tensor, image_index: torch.Tensor | None,
                  patch_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Region sequences from images encoded once.

    Args:
        image_embeds: ``[B, 1+N, D]`` full-attention tokens of each image.
        image_index: ``[T]`` image of each text, or None when text i belongs to image i.
        patch_mask: ``[T, 1+N]`` from :func:`boxes_to_patch_mask`, or None for whole images.

    Returns:
        tokens ``[T, 1+N, D]`` with index 0 = mean of the in-box patches (the image CLS when no mask),
        and the cross-attention mask ``[T, 1+N]`` (1 = attend).
    """
    full = gather_images(image_embeds, image_index)
    if patch_mask is None:
        return full, torch.ones(full.shape[:2], dtype=full.dtype, device=full.device)
    weights = patch_mask[:, 1:].to(full.dtype)  # [T, N]
    cls = torch.einsum("tn,tnd->td", weights, full[:, 1:]) / weights.sum(1, keepdim=True).clamp_min(1)
    return torch.cat([cls[:, None], full[:, 1:]], dim=1), patch_mask.to(full.dtype)
