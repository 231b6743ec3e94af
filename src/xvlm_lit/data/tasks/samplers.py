"""Evaluation sampling: every sample read exactly once over all ranks (no padding duplicates)."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of ``range(n)``: the ranks' shards are disjoint and cover ``range(n)``.

    Unlike ``DistributedSampler`` nothing is repeated to even the shards out, so no sample is scored twice.
    """

    def __init__(self, n: int, rank: int = 0, world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world size {world}")
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))
