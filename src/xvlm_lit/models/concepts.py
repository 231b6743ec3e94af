"""Multi-grained visual concepts: a box selects the patches it touches; a region is ``[region_CLS, patches]``."""

from __future__ import annotations

import torch


def boxes_to_patch_mask(boxes: torch.Tensor, image_size: int, grid_size: int) -> torch.Tensor:
    """Patch masks of boxes on the ``n x n`` grid, with X-VLM's exact rule.

    ``x_min = min(floor(x/P), n-1)``, ``x_max = max(x_min+1, min(ceil((x+w)/P), n))`` (exclusive), likewise for y,
    with ``P = R/n``; negative coordinates clamp to 0, so every box selects at least one patch.

    Args:
        boxes: ``[K, 4]`` (x, y, w, h) in pixels of the resized ``R x R`` image.
        image_size: ``R``.
        grid_size: ``n``.

    Returns:
        ``[K, 1 + n*n]`` float mask: index 0 (CLS) is 1, patch (row i, col j) is at ``n*i + j + 1``.
    """
    n = grid_size
    b = boxes.detach().to(torch.float64) * (n / image_size)  # in patch units, exact for integer R/n
    x0, y0, w, h = b.unbind(-1)
    lo_x = torch.floor(x0).clamp(0, n - 1)
    lo_y = torch.floor(y0).clamp(0, n - 1)
    hi_x = torch.maximum(lo_x + 1, torch.ceil(x0 + w).clamp(max=n))
    hi_y = torch.maximum(lo_y + 1, torch.ceil(y0 + h).clamp(max=n))
    idx = torch.arange(n, device=boxes.device, dtype=torch.float64)
    in_x = (idx[None] >= lo_x[:, None]) & (idx[None] < hi_x[:, None])  # [K, n]
    in_y = (idx[None] >= lo_y[:, None]) & (idx[None] < hi_y[:, None])
    patches = (in_y[:, :, None] & in_x[:, None, :]).flatten(1)  # [K, n*n], row-major
    ones = torch.ones(len(boxes), 1, dtype=torch.bool, device=boxes.device)
    return torch.cat([ones, patches], dim=1).float()


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
