"""Per-sample predictions gathered from every rank and written once, by rank 0, as JSON lines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist


def gather_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """All ranks' rows (every rank gets the full list; one process: ``rows`` itself)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(rows)
    parts: list[list[dict[str, Any]]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(parts, list(rows))
    return [row for part in parts for row in part]


def write_jsonl(rows: Sequence[dict[str, Any]], path: str | Path, sort_key: str | None = None) -> Path:
    """Write ``rows`` (sorted by ``sort_key`` when given, so the file does not depend on the rank count)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: r[sort_key]) if sort_key else list(rows)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fp:
        for row in rows:
            fp.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path
