"""Which training steps carry a region batch, and which worker builds which step.

``region_schedule(seed, step, prob)`` depends on ``(seed, step)`` only, never on rank or worker, so every rank
decides the same. A DataLoader with ``W`` workers over an IterableDataset takes batches round-robin (worker ``k``
produces batches ``k, k+W, ...``), so a worker that yields whole step batches builds global steps
``epoch * epoch_steps + local * W + worker``.
"""

from __future__ import annotations

import hashlib


def region_schedule(seed: int, step: int, prob: float) -> bool:
    """True when global ``step`` carries a region batch (probability ``prob``; identical on every rank)."""
    if prob <= 0.0:
        return False
    if prob >= 1.0:
        return True
    digest = hashlib.blake2b(f"xvlm-region/{int(seed)}/{int(step)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < prob


def worker_steps(epoch: int, epoch_steps: int, worker: int, num_workers: int) -> range:
    """The global steps a worker builds in one epoch: ``epoch * epoch_steps + (worker, worker + W, ...)``."""
    start = epoch * epoch_steps
    return range(start + worker, start + epoch_steps, max(1, num_workers))
