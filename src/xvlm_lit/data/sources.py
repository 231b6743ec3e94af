"""Pre-training sources: what a config entry means and where its samples live.

A source is ``{name, urls, weight, kind, streams, resampled?}``:
  - ``urls``: a brace pattern (``/data/cc3m/cc3m-{000000..000331}.tar``), a directory (its ``*.tar``, sorted), a glob,
    a single tar, or a list of any of these; non-local urls (``pipe:``, ``s3://``, ``http(s)://``) pass through to
    webdataset unchanged. An ``img2dataset`` directory without tars is read as an unpacked folder
    (``**/*.jpg`` + ``.txt`` + ``.json`` with the same stem).
  - ``kind``: ``shards`` (the project's shard schema) or ``img2dataset`` (caption-only: caption from ``txt``).
  - ``streams``: which streams read it: ``itc`` (image-text) and/or ``region`` (``shards`` only).
  - ``weight``: its share of each stream it feeds (normalised over the sources of that stream).
  - ``resampled``: draw shards with replacement (any shard count) instead of partitioning them across readers.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webdataset.shardlists import expand_urls

KINDS = ("shards", "img2dataset")
STREAMS = ("itc", "region")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
_REMOTE = ("pipe:", "s3://", "gs://", "http://", "https://", "hf://")


@dataclass(frozen=True)
class FolderSample:
    """One sample of an unpacked img2dataset folder: ``key`` and ``{ext: path}``."""

    key: str
    files: tuple[tuple[str, str], ...]


@dataclass
class SourceSpec:
    """A validated source (see the module docstring)."""

    name: str
    urls: list[str]
    weight: float = 1.0
    kind: str = "shards"
    streams: tuple[str, ...] = ("itc",)
    resampled: bool | None = None
    folder: list[FolderSample] | None = field(default=None, repr=False)

    @property
    def units(self) -> int:
        """Number of read units: shards, or samples of an unpacked folder."""
        return len(self.folder) if self.folder is not None else len(self.urls)


def _as_plain(cfg: Any) -> Any:
    """OmegaConf containers -> plain Python (no hard dependency on omegaconf here)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover
        return cfg
    if isinstance(cfg, DictConfig | ListConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def is_remote(url: str) -> bool:
    """True for urls webdataset opens itself (pipes, object stores, http)."""
    return url.startswith(_REMOTE)


def expand_one(url: str) -> list[str]:
    """Expand one url: a directory -> its sorted ``*.tar``; braces; globs; remote urls unchanged."""
    if is_remote(url):
        return expand_urls(url)
    path = os.path.expanduser(url)
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(glob.escape(path), "*.tar")))
    out: list[str] = []
    for item in expand_urls(path):
        out.extend(sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item])
    return out


def resolve_urls(urls: str | Sequence[str], name: str) -> list[str]:
    """All shard urls of a source, in config order; raises ``FileNotFoundError`` for a missing local file."""
    items = [urls] if isinstance(urls, str | os.PathLike) else list(urls)
    out: list[str] = []
    for item in items:
        out.extend(expand_one(str(item)))
    missing = [u for u in out if not is_remote(u) and not os.path.isfile(u)]
    if missing:
        raise FileNotFoundError(f"source '{name}': {len(missing)} shard(s) not found, e.g. {missing[0]}")
    return out


def list_folder(root: str | os.PathLike) -> list[FolderSample]:
    """Samples of an unpacked img2dataset folder (recursive), sorted by key; only stems that have an image."""
    root = Path(root).expanduser()
    groups: dict[str, dict[str, str]] = {}
    for path in root.rglob("*"):
        if not path.is_file() or "." not in path.name:
            continue
        stem, ext = path.name.split(".", 1)
        key = str(path.parent.relative_to(root) / stem)
        groups.setdefault(key, {})[ext.lower()] = str(path)
    return [FolderSample(k, tuple(sorted(v.items()))) for k, v in sorted(groups.items())
            if any(e in v for e in IMAGE_EXTS)]


def _check_fields(cfg: Mapping[str, Any]) -> None:
    unknown = set(cfg) - {"name", "urls", "weight", "kind", "streams", "resampled"}
    if unknown:
        raise ValueError(f"source {cfg.get('name', '?')!r}: unknown keys {sorted(unknown)}")
    for key in ("name", "urls"):
        if key not in cfg:
            raise ValueError(f"source {cfg!r} needs '{key}'")


def make_source(cfg: Mapping[str, Any] | SourceSpec) -> SourceSpec:
    """Validate a config entry and resolve its urls (or folder samples)."""
    if isinstance(cfg, SourceSpec):
        return cfg
    cfg = dict(_as_plain(cfg))
    _check_fields(cfg)
    name, kind = str(cfg["name"]), cfg.get("kind", "shards")
    streams = cfg.get("streams", ["itc"])
    streams = (streams,) if isinstance(streams, str) else tuple(streams)
    weight = float(cfg.get("weight", 1.0))
    if kind not in KINDS:
        raise ValueError(f"source '{name}': kind must be one of {KINDS}, got {kind!r}")
    if not streams or set(streams) - set(STREAMS):
        raise ValueError(f"source '{name}': streams must be a non-empty subset of {STREAMS}, got {list(streams)}")
    if kind == "img2dataset" and "region" in streams:
        raise ValueError(f"source '{name}': an img2dataset source has no boxes and cannot feed the region stream")
    if not weight > 0:
        raise ValueError(f"source '{name}': weight must be > 0, got {weight}")
    urls, folder = _locate(cfg["urls"], name, kind)
    return SourceSpec(name, urls, weight, kind, streams, cfg.get("resampled"), folder)


def _locate(urls: Any, name: str, kind: str) -> tuple[list[str], list[FolderSample] | None]:
    """Shard urls, or (for an img2dataset directory without tars) the unpacked folder's samples."""
    if kind == "img2dataset" and isinstance(urls, str | os.PathLike) and os.path.isdir(os.path.expanduser(urls)):
        if not glob.glob(os.path.join(glob.escape(os.path.expanduser(str(urls))), "*.tar")):
            folder = list_folder(urls)
            if not folder:
                raise ValueError(f"source '{name}': {urls} holds neither *.tar shards nor image files")
            return [str(urls)], folder
    resolved = resolve_urls(urls, name)
    if not resolved:
        raise ValueError(f"source '{name}': no shards found for urls={urls!r}")
    return resolved, None


def make_sources(cfgs: Sequence[Mapping[str, Any] | SourceSpec] | None) -> list[SourceSpec]:
    """Validate a list of source entries (names must be unique)."""
    sources = [make_source(c) for c in (_as_plain(cfgs) or [])]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique, got {names}")
    return sources


def stream_sources(sources: Sequence[SourceSpec], stream: str) -> tuple[list[SourceSpec], list[float]]:
    """The sources feeding ``stream`` and their normalised weights."""
    chosen = [s for s in sources if stream in s.streams]
    total = sum(s.weight for s in chosen)
    return chosen, [s.weight / total for s in chosen]


class ReaderCountError(ValueError):
    """A partitioned source with fewer shards than readers (raised before training starts; names the numbers)."""


def check_reader_count(sources: Sequence[SourceSpec], world_size: int, num_workers: int,
                       default_resampled: bool) -> None:
    """Raise :class:`ReaderCountError` when a partitioned source has fewer shards than readers (ranks x workers).

    Partitioned sources give every reader (one per rank and data worker) its own disjoint share of the shards; a
    reader with no shard could not honour the source weights, so this is an error, not a warning. Resampled
    sources draw shards with replacement and accept any count; unpacked folders are always split by sample.
    """
    readers = max(1, world_size) * max(1, num_workers)
    for s in sources:
        resampled = default_resampled if s.resampled is None else s.resampled
        if (s.folder is not None or not resampled) and s.units < readers:
            unit = "sample(s)" if s.folder is not None else "shard(s)"
            raise ReaderCountError(
                f"source '{s.name}' has {s.units} {unit} but {world_size} rank(s) x {max(1, num_workers)} "
                f"worker(s) = {readers} readers each need at least one: re-shard it into >= {readers} shards, "
                f"lower num_workers, or set resampled: true for this source"
            )
