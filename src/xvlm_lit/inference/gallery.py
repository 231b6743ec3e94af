"""Encoded galleries for retrieval, and a small cache of them keyed by their file paths or texts."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class ImageGallery:
    """Encoded images: ``tokens [N, 1+Nv, Dv]`` (for ITM re-ranking), ITC ``feats [N, E]``; ``items`` the paths
    (``None`` for in-memory images)."""

    items: list[str | None]
    tokens: torch.Tensor
    feats: torch.Tensor

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class TextGallery:
    """Encoded texts: ``hidden [N, L, H]`` and ``mask [N, L]`` (for ITM re-ranking), ITC ``feats [N, E]``."""

    items: list[str]
    hidden: torch.Tensor
    mask: torch.Tensor
    feats: torch.Tensor

    def __len__(self) -> int:
        return len(self.items)


def path_key(items: Sequence) -> Hashable | None:
    """A cache key for a list of image paths (path + modification time + size), None when some item is not a
    path (in-memory images are not cached: give an :class:`ImageGallery` from ``index_images`` instead)."""
    key = []
    for item in items:
        if not isinstance(item, str | os.PathLike):
            return None
        path = Path(item).expanduser().resolve()
        stat = path.stat() if path.is_file() else None
        key.append((str(path), stat.st_mtime_ns if stat else None, stat.st_size if stat else None))
    return ("images", tuple(key))


class GalleryCache:
    """At most ``size`` encoded galleries, least recently used dropped first."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, ImageGallery | TextGallery] = OrderedDict()

    def get(self, key: Hashable | None) -> ImageGallery | TextGallery | None:
        if key is None or key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: Hashable | None, value: ImageGallery | TextGallery) -> None:
        if key is None or self.size < 1:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
