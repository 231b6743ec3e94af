"""Pure box geometry shared by the data pipeline and the model (no model or data imports)."""

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
