"""Parameter groups (2x lr for X-VLM's new parts, no decay for biases/norms) and the warm-up/decay schedule."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

#: the reference excludes from weight decay by substring: so Swin's relative-position tables are not decayed
REFERENCE_NO_DECAY = ("bias", "LayerNorm", "norm")


def param_groups(named: Iterable[tuple[str, torch.nn.Parameter]], is_new: Callable[[str], bool], lr: float,
                 weight_decay: float, new_lr_mult: float = 2.0,
                 no_decay: Sequence[str] = REFERENCE_NO_DECAY) -> list[dict]:
    """Four AdamW groups: (base | new lr) x (decay | no decay). Empty groups are dropped; tied weights appear once."""
    groups: dict[tuple[bool, bool], list] = {(n, d): [] for n in (False, True) for d in (False, True)}
    names: dict[tuple[bool, bool], list[str]] = {k: [] for k in groups}
    seen: set[int] = set()
    for name, p in named:
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        key = (is_new(name), not any(s in name for s in no_decay))
        groups[key].append(p)
        names[key].append(name)
    out = []
    for (new, decay), params in groups.items():
        if params:
            out.append({"params": params, "lr": lr * (new_lr_mult if new else 1.0),
                        "weight_decay": weight_decay if decay else 0.0, "names": names[(new, decay)]})
    return out


def warmup_linear_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """lr factor: linear 0 -> 1 over ``warmup_steps``, then linear 1 -> 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """A per-step ``LambdaLR`` with :func:`warmup_linear_decay`."""
    if total_steps <= 0:
        raise ValueError(f"task.scheduler.total_steps must be positive, got {total_steps}")
    return LambdaLR(optimizer, lambda s: warmup_linear_decay(s, warmup_steps, total_steps))
