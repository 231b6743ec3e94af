"""Evaluation metrics as :class:`torchmetrics.Metric` states: their sync is the distributed reduction.

Every state is a sum, so each rank updates with the queries it scores (each query exactly once over all ranks)
and ``compute()`` on every rank returns the global value. Construct with ``sync_on_compute=False`` to compute
the local value even when a process group is initialised (e.g. an evaluation run on rank 0 only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric
from torchvision.ops import box_iou


def pessimistic_rank(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """0-based rank ``[Q]`` of each query's best-scoring positive; ties count against the model.

    rank = #candidates scoring above the best positive + #non-positive candidates scoring equal to it, so a
    constant scorer ranks every positive last among the non-positives.

    Args:
        scores: ``[Q, C]`` float, no NaN (``-inf`` allowed: e.g. candidates that were not re-ranked).
        positive: ``[Q, C]`` bool, at least one True per row.
    """
    if scores.ndim != 2 or scores.shape != positive.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and positive {tuple(positive.shape)} must be the same [Q, C]")
    if positive.dtype != torch.bool:
        raise ValueError(f"positive must be a bool mask, got {positive.dtype}")
    if scores.isnan().any():
        raise ValueError("scores contain NaN: a NaN score cannot be ranked")
    if not positive.any(1).all():
        missing = (~positive.any(1)).nonzero().flatten()[:5].tolist()
        raise ValueError(f"queries without a positive candidate (first rows: {missing}): recall is undefined")
    best = scores.masked_fill(~positive, float("-inf")).amax(1, keepdim=True)  # [Q, 1]
    above = (scores > best).sum(1)
    tied = ((scores == best) & ~positive).sum(1)
    return above + tied


class RecallAtK(Metric):
    """R@K in percent: share of queries whose best positive candidate ranks within the top K (ties pessimistic).

    ``update(scores [Q, C], positive [Q, C] bool)``; ``compute() -> {k: percent}``.
    Text retrieval (image queries) is best-of-its-captions: mark every caption of the image positive.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, ks: Sequence[int] = (1, 5, 10), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not ks or any(int(k) < 1 for k in ks):
            raise ValueError(f"ks={ks}: every K must be >= 1")
        self.ks = tuple(int(k) for k in ks)
        self.add_state("hits", torch.zeros(len(self.ks), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scores: torch.Tensor, positive: torch.Tensor) -> None:
        """Add the queries (rows) of ``scores [Q, C]`` with their ``positive [Q, C]`` candidates."""
        rank = pessimistic_rank(scores, positive).to(self.hits.device)
        ks = torch.tensor(self.ks, device=rank.device)
        self.hits += (rank[:, None] < ks[None]).sum(0)
        self.count += rank.numel()

    def compute(self) -> dict[int, float]:
        """``{k: percent}``; NaN without any query."""
        count = int(self.count)
        return {k: (100.0 * int(h) / count if count else float("nan")) for k, h in zip(self.ks, self.hits, strict=True)}


def paired_iou(pred_xyxy: torch.Tensor, target_xyxy: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """IoU ``[N]`` of row i of ``pred_xyxy [N, 4]`` with row i of ``target_xyxy [N, 4]`` (absolute or normalised
    x1, y1, x2, y2); a pair whose union is empty (two zero-area boxes) has IoU 0. Chunked: memory ``chunk^2``."""
    if pred_xyxy.shape != target_xyxy.shape or pred_xyxy.ndim != 2 or pred_xyxy.shape[1] != 4:
        raise ValueError(f"boxes must both be [N, 4], got {tuple(pred_xyxy.shape)} and {tuple(target_xyxy.shape)}")
    pred, target = pred_xyxy.float(), target_xyxy.float()
    parts = [box_iou(pred[s:s + chunk], target[s:s + chunk]).diagonal() for s in range(0, len(pred), chunk)]
    iou = torch.cat(parts) if parts else pred.new_zeros(0)
    return iou.nan_to_num(0.0)


class GroundingAccuracy(Metric):
    """Acc@IoU>=threshold and mean IoU, both in percent, of predicted boxes against their targets.

    ``update(pred_xyxy [N, 4], target_xyxy [N, 4])``; ``compute() -> {"acc": percent, "mean_iou": percent}``.
    IoU exactly at the threshold is a hit.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = float(threshold)
        self.add_state("hits", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("iou_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred_xyxy: torch.Tensor, target_xyxy: torch.Tensor) -> None:
        """Add ``N`` (prediction, target) box pairs, each ``[N, 4]`` x1, y1, x2, y2."""
        iou = paired_iou(pred_xyxy, target_xyxy).to(self.iou_sum.device)
        self.hits += (iou >= self.threshold).sum()
        self.count += iou.numel()
        self.iou_sum += iou.double().sum()

    def compute(self) -> dict[str, float]:
        """``{"acc": percent, "mean_iou": percent}``; NaN without any box."""
        count = int(self.count)
        if not count:
            return {"acc": float("nan"), "mean_iou": float("nan")}
        return {"acc": 100.0 * int(self.hits) / count, "mean_iou": 100.0 * float(self.iou_sum) / count}
