"""Grad-CAM for weakly supervised grounding, as pure functions (X-VLM's ``Grounding.py`` protocol).

1. :func:`gradcam_heatmap`: the cross-attention probabilities of one fusion layer times the positive part of their
   gradient (of the ITM positive logit), both restricted to real text tokens, averaged over heads and text
   positions, the image CLS dropped: an ``n x n`` heat map per (image, expression).
2. :func:`upsample_heatmap`: bicubic up-sampling to the original image size.
3. :func:`box_scores` / :func:`pick_box`: each candidate box scores (heat inside it) / area ** alpha (alpha = 0.5:
   sqrt(area)); the best box is the prediction.
4. :func:`random_box_hit_rate`: the expected Acc@IoU of choosing one candidate at random (the baseline).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, box_iou


def gradcam_heatmap(attention: torch.Tensor, grads: torch.Tensor, text_mask: torch.Tensor,
                    grid_size: int) -> torch.Tensor:
    """Grad-CAM heat maps from one cross-attention layer.

    ``heat = mean_heads mean_text (A * clamp(dA, min=0) * m)``, the image CLS column dropped, where ``A`` are the
    probabilities, ``dA`` their gradient and ``m`` the text mask (X-VLM ``Grounding.py``, ``val()``): the mean over
    text positions divides by the padded length ``L`` (padding contributes zeros), a per-sample constant that
    changes no ranking of boxes.

    Args:
        attention: ``[B, heads, L, 1 + n*n]`` softmax probabilities (text queries over image tokens, CLS first).
        grads: ``[B, heads, L, 1 + n*n]`` gradient of the summed ITM positive logits w.r.t. ``attention``.
        text_mask: ``[B, L]`` 1 for real text tokens.
        grid_size: ``n`` (the patch grid is ``n x n``, row-major).

    Returns:
        ``[B, n, n]`` float heat maps.
    """
    b, _, length, tokens = attention.shape
    if grads.shape != attention.shape:
        raise ValueError(f"grads {tuple(grads.shape)} must match attention {tuple(attention.shape)}")
    if tokens != 1 + grid_size * grid_size:
        raise ValueError(f"attention has {tokens} image tokens, expected 1 + {grid_size}^2 (CLS + patch grid)")
    mask = text_mask.to(attention.dtype).view(b, 1, length, 1)
    cam = attention[..., 1:].float() * mask
    grad = grads[..., 1:].float().clamp(min=0) * mask
    return (cam * grad).mean(1).mean(1).view(b, grid_size, grid_size)


def upsample_heatmap(heat: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[n, n]`` -> ``[height, width]`` by bicubic interpolation (``align_corners=False``), as the reference."""
    return F.interpolate(heat[None, None].float(), size=(int(height), int(width)), mode="bicubic",
                         align_corners=False)[0, 0]


def box_scores(heat: torch.Tensor, boxes_xywh: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Score of each candidate: ``heat[int(y):int(y+h), int(x):int(x+w)].sum() / (w*h) ** alpha``.

    The pixel window is the reference's (coordinates truncated to integers, clipped to the image; a start below
    0 counts from 0 where Python slicing would wrap); the area is the box's own ``w * h``, not the window's.
    Sums come from a float64 summed-area table.

    Args:
        heat: ``[H, W]`` heat map in original image pixels.
        boxes_xywh: ``[K, 4]`` candidate boxes (x, y, w, h) in the same pixels.
        alpha: area exponent (reference 0.5).

    Returns:
        ``[K]`` float64 scores.
    """
    height, width = heat.shape
    boxes = boxes_xywh.to(torch.float64).reshape(-1, 4)
    table = F.pad(heat.to(torch.float64).cumsum(0).cumsum(1), (1, 0, 1, 0))  # [H+1, W+1], table[i, j] = sum[:i, :j]
    x0 = boxes[:, 0].trunc().clamp(0, width).long()
    y0 = boxes[:, 1].trunc().clamp(0, height).long()
    x1 = torch.maximum((boxes[:, 0] + boxes[:, 2]).trunc().clamp(0, width).long(), x0)
    y1 = torch.maximum((boxes[:, 1] + boxes[:, 3]).trunc().clamp(0, height).long(), y0)
    inside = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    return inside / (boxes[:, 2] * boxes[:, 3]) ** alpha


def pick_box(heat_grid: torch.Tensor, boxes_xywh: torch.Tensor, height: int, width: int,
             alpha: float = 0.5) -> tuple[int, torch.Tensor]:
    """The best candidate for one (image, expression): ``(index, scores [K])``.

    ``heat_grid [n, n]`` is up-sampled to ``height x width`` (the original image) and each of ``boxes_xywh [K, 4]``
    scored by :func:`box_scores`; the first of equal best scores wins. (The reference keeps a box only when its
    score exceeds 0 and otherwise reuses the previous sample's prediction; here the argmax is always taken.)
    """
    if len(boxes_xywh) == 0:
        raise ValueError("no candidate box to choose from")
    scores = box_scores(upsample_heatmap(heat_grid, height, width), boxes_xywh, alpha)
    return int(scores.argmax()), scores


def random_box_hit_rate(candidates_xywh: torch.Tensor, target_xywh: torch.Tensor, threshold: float = 0.5) -> float:
    """Expected hit of a uniformly random candidate: (#candidates with IoU >= threshold with the target) / K
    (``candidates_xywh [K, 4]``, ``target_xywh [4]``); 0 without candidates."""
    if len(candidates_xywh) == 0:
        return 0.0
    cands = box_convert(candidates_xywh.reshape(-1, 4).float(), "xywh", "xyxy")
    target = box_convert(target_xywh.reshape(1, 4).float(), "xywh", "xyxy")
    return float((box_iou(cands, target)[:, 0] >= threshold).double().mean())
