"""The resumable, deterministic, parallel shard runner shared by every converter.

A converter hands :func:`run` its records in a deterministic order (an iterable, consumed once, streaming) and a
picklable function turning one record into a :class:`~data_prep.samples.Raw` (or a ``Skipped``). Shard ``k``
holds records ``[k*S, (k+1)*S)``, whatever ``--workers`` is, so the output is byte-identical for identical inputs.
Each shard is built by one worker: written to ``.NAME.tmp``, its manifest part to ``parts/NAME.json``, then the
tar is renamed into place (a shard whose records were all skipped is an empty tar, so numbering has no gaps).
A re-run skips every shard whose tar and part exist (made with the same settings), so a killed conversion resumes
where it stopped. ``manifest.json`` is merged from the parts once all shards are done; its presence marks a
finished conversion. Its ``skipped`` counts samples not written by reason, ``skipped_detail`` gives one example per
reason with more to say (for ``missing_image`` the paths tried), ``dropped`` the captions/boxes removed from samples
(see :mod:`data_prep.samples`), ``adjusted`` what was changed in place, ``records`` the records sharded (after the
exclusions a converter makes up front, which are counted in ``skipped`` too).

A run that keeps no sample of a non-empty input fails with a :class:`ConvertError` naming the likely cause (for
``missing_image``: the image root, the paths tried for one record, "check --images"). It writes no ``manifest.json``
(whose presence means a usable conversion) but ``manifest.failed.json`` with the same counts for inspection, and it
removes its shards and parts, which hold no sample, so that a re-run with corrected inputs converts afresh.

A re-run with other settings than the finished (or half-done) shards in ``--out`` is refused before anything there
is touched.

Set ``DATA_PREP_FAIL_AFTER_SHARDS=N`` to make the runner stop with an error after writing N shards (used by the
tests to simulate a conversion killed half-way).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import webdataset as wds
from tqdm import tqdm

from data_prep.jsonstream import JsonStreamError
from data_prep.samples import Built, Raw, Skipped, build
from data_prep.shards import MAX_SIDE, MAX_SKIP_EXAMPLES, Manifest, encode_json, problem_code, validate_record
from xvlm_lit.utils.progress import is_terminal, progress_line

FAIL_ENV = "DATA_PREP_FAIL_AFTER_SHARDS"
PARTS = "parts"
MANIFEST = "manifest.json"
FAILED = "manifest.failed.json"
MAX_DETAIL = 600  # characters of a skip detail kept in parts and the manifest
PART_VERSION = 1
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_-]")


class ConvertError(ValueError):
    """A problem with the inputs or the output directory that the user must fix (the CLI prints it)."""


@dataclass
class Options:
    """Where and how to write. ``args`` are the converter's own settings: they go into the manifest and into the
    signature that a re-run must match to reuse finished shards."""

    out: Path
    source: str
    shard_size: int = 1000
    max_side: int = MAX_SIDE
    quality: int = 90
    workers: int = 1
    overwrite: bool = False
    progress: bool = True
    args: dict[str, Any] = field(default_factory=dict)
    image_root: str | None = None  # where images are looked up, for error messages only (not in the signature)

    def signature(self) -> dict[str, Any]:
        """The settings that determine the shards' content."""
        return {"source": self.source, "shard_size": self.shard_size, "max_side": self.max_side,
                "jpeg_quality": self.quality, **self.args}


class Tally:
    """Counts by reason, each with a few example keys (the manifest's ``skipped`` / ``dropped`` layout)."""

    def __init__(self, data: dict[str, dict[str, Any]] | None = None):
        self.data: dict[str, dict[str, Any]] = {k: {"count": v["count"], "examples": list(v["examples"])}
                                                 for k, v in (data or {}).items()}

    def add(self, reason: str, key: str, count: int = 1) -> None:
        entry = self.data.setdefault(reason, {"count": 0, "examples": []})
        entry["count"] += count
        if len(entry["examples"]) < MAX_SKIP_EXAMPLES:
            entry["examples"].append(key)

    def merge(self, other: dict[str, dict[str, Any]]) -> None:
        for reason, entry in other.items():
            mine = self.data.setdefault(reason, {"count": 0, "examples": []})
            mine["count"] += entry["count"]
            mine["examples"] = (mine["examples"] + entry["examples"])[:MAX_SKIP_EXAMPLES]

    def total(self) -> int:
        return sum(v["count"] for v in self.data.values())

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {k: self.data[k] for k in sorted(self.data)}


def safe_key(text: str) -> str:
    """A webdataset-safe sample key (letters, digits, ``_`` and ``-`` only; other characters become ``_``)."""
    return _UNSAFE_KEY.sub("_", str(text)) or "_"


def shard_name(source: str, index: int) -> str:
    return f"{source}-{index:06d}.tar"


def require_dir(path: str | os.PathLike | None, flag: str = "--images") -> None:
    """Fail up front when a folder option names no existing folder (``None``: not given, nothing to check)."""
    if path is None:
        return
    if not Path(path).is_dir():
        what = "is a file, not a folder" if Path(path).exists() else "does not exist"
        raise ConvertError(f"{flag} {path} {what}; give the folder that holds the images")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- one shard
@dataclass
class _ShardTask:
    index: int
    items: list[Any]
    to_raw: Callable[[Any], Raw | Skipped]
    out: Path
    source: str
    max_side: int
    quality: int
    signature: dict[str, Any]


def _sample(task: _ShardTask, item: Any) -> Built | Skipped:
    raw = task.to_raw(item)
    return raw if isinstance(raw, Skipped) else build(raw, task.source, task.max_side, task.quality)


def write_shard(task: _ShardTask) -> dict[str, Any]:
    """Build and write one shard and its manifest part; returns the part."""
    name = shard_name(task.source, task.index)
    final, tmp = task.out / name, task.out / f".{name}.tmp"
    counts, skipped, dropped, adjusted, keys = Manifest(task.source), Tally(), Tally(), Counter(), set()
    details: dict[str, str] = {}
    with wds.TarWriter(str(tmp), encoder=False, mtime=0.0, user="", group="", mode=0o444) as tar:
        for item in task.items:
            sample = _sample(task, item)
            for reason, n in sorted(sample.dropped.items()):
                dropped.add(reason, sample.key, n)
            if isinstance(sample, Skipped):
                skipped.add(sample.reason, sample.key)
                if sample.detail and sample.reason not in details:
                    details[sample.reason] = f"{sample.key}: {sample.detail}"[:MAX_DETAIL]
                continue
            problems = validate_record(sample.record, task.max_side)
            reason = problem_code(problems[0]) if problems else ("duplicate_key" if sample.key in keys else "")
            if reason:
                skipped.add(reason, sample.key)
                continue
            keys.add(sample.key)
            adjusted.update(sample.adjusted)
            tar.write({"__key__": sample.key, "jpg": sample.jpg, "json": encode_json(sample.record)})
            counts.count(sample.record)
    part = {"version": PART_VERSION, "index": task.index, "name": name, "signature": task.signature,
            "records": len(task.items), "samples": counts.counts["images"], "bytes": os.path.getsize(tmp),
            "counts": counts.counts, "skipped": skipped.to_dict(), "skipped_detail": dict(sorted(details.items())),
            "dropped": dropped.to_dict(), "adjusted": dict(sorted(adjusted.items()))}
    _atomic_write_text(task.out / PARTS / f"{name[:-4]}.json", json.dumps(part, indent=1) + "\n")
    os.replace(tmp, final)  # the tar appears last: its presence means the shard and its part are complete
    return part


# ----------------------------------------------------------------------------------------------- the run
def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _load_part(out: Path, source: str, index: int) -> dict[str, Any] | None:
    try:
        return json.loads((out / PARTS / f"{shard_name(source, index)[:-4]}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_done(out: Path, source: str, index: int, signature: dict[str, Any]) -> bool:
    part = _load_part(out, source, index)
    if part is None or part.get("signature") != signature or part.get("version") != PART_VERSION:
        return False
    return (out / shard_name(source, index)).is_file()


def ordered_map(fn: Callable[[Any], Any], tasks: Iterable[Any], workers: int) -> Iterator[Any]:
    """``fn`` over ``tasks`` in order (``Pool.imap`` semantics) in ``workers`` processes, pulling at most
    ``2 * workers`` tasks ahead of the consumer so a streaming producer keeps its memory bounded (``imap`` drains
    its whole input into a queue). A process pool executor rather than ``multiprocessing.Pool``: when the run
    stops early, tasks not started are cancelled and running ones finish (their shards are complete), whereas
    ``Pool.terminate`` can hang while a large task is still being written into a worker's pipe."""
    if workers <= 1:
        yield from map(fn, tasks)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context()) as pool:
        pending: deque = deque()
        try:
            for task in tasks:
                pending.append(pool.submit(fn, task))
                while len(pending) >= 2 * workers or (pending and pending[0].done()):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _check_settings(opts: Options, parts: list[Path]) -> None:
    """Refuse to run over shards made with other settings (nothing is changed in ``--out`` before this passes)."""
    for path in parts:
        try:
            part = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # an unreadable part marks its shard as not done: it is rebuilt
        if isinstance(part, dict) and part.get("signature") != opts.signature():
            raise ConvertError(f"{opts.out} holds shards made with other settings ({path.name}: "
                               f"{part.get('signature')}); pass --overwrite or choose another --out")


def _prepare_out(opts: Options) -> None:
    """Check, then make ``--out`` ready: all checks come before anything is deleted, so a refused run loses
    nothing (the manifest, shards and parts of a finished conversion stay as they were)."""
    out = opts.out
    parts = sorted((out / PARTS).glob(f"{opts.source}-*.json"))
    if not opts.overwrite:
        _check_settings(opts, parts)
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    (out / FAILED).unlink(missing_ok=True)
    for tmp in [*out.glob(f".{opts.source}-*.tmp"), *(out / PARTS).glob(f".{opts.source}-*.tmp")]:
        tmp.unlink()  # left by a run that was killed mid-shard
    if opts.overwrite:
        for path in [*parts, *out.glob(f"{opts.source}-*.tar")]:
            path.unlink()


def _remove_stale(out: Path, source: str, n_shards: int) -> None:
    """Remove shards beyond the last one of this run (left by an earlier run over more records)."""
    for path in [*out.glob(f"{source}-*.tar"), *(out / PARTS).glob(f"{source}-*.json")]:
        index = path.name[len(source) + 1:].split(".")[0]
        if index.isdigit() and int(index) >= n_shards:
            path.unlink()


def merge_parts(opts: Options, n_shards: int, records: int, pre_skipped: Tally | None = None,
                pre_dropped: Tally | None = None) -> dict[str, Any]:
    """The run's manifest: the parts of shards ``0 .. n_shards-1`` plus what was skipped/dropped before sharding."""
    manifest = Manifest(opts.source, args=opts.signature())
    skipped, dropped, adjusted = Tally((pre_skipped or Tally()).data), Tally((pre_dropped or Tally()).data), Counter()
    details: dict[str, str] = {}
    for index in range(n_shards):
        part = _load_part(opts.out, opts.source, index)
        if part is None:
            raise ConvertError(f"manifest part of shard {index} is missing under {opts.out / PARTS}")
        for k, v in part["counts"].items():
            manifest.counts[k] = manifest.counts.get(k, 0) + v
        skipped.merge(part["skipped"])
        for reason, detail in part.get("skipped_detail", {}).items():
            details.setdefault(reason, detail)
        dropped.merge(part["dropped"])
        adjusted.update(part["adjusted"])
        manifest.add_shard(part["name"], part["samples"], part["bytes"])
    manifest.skipped = skipped.to_dict()
    data = manifest.to_dict()
    data.update({"records": records, "skipped_detail": dict(sorted(details.items())), "dropped": dropped.to_dict(),
                 "dropped_total": dropped.total(), "adjusted": dict(sorted(adjusted.items()))})
    return data


def identity(item: Any) -> Any:
    """The ``to_raw`` of converters whose records already are :class:`~data_prep.samples.Raw`."""
    return item


def run(items: Iterable[Any], to_raw: Callable[[Any], Raw | Skipped], opts: Options, total: int | None = None,
        pre_skipped: Tally | None = None, pre_dropped: Tally | None = None) -> dict[str, Any]:
    """Convert ``items`` into ``opts.out/{source}-NNNNNN.tar`` + ``manifest.json``; returns the manifest.

    ``to_raw`` runs in the workers (so it may read files); it must be a module-level function. ``pre_skipped``
    and ``pre_dropped`` hold records / annotations the converter left out before sharding (they may keep filling
    while ``items`` is consumed).
    """
    if opts.shard_size < 1:
        raise ConvertError(f"--shard-size must be >= 1, got {opts.shard_size}")
    _prepare_out(opts)
    fail_after = int(os.environ.get(FAIL_ENV) or 0)
    signature, n_shards, records, written = opts.signature(), 0, 0, 0
    # a bar in a terminal; elsewhere (CI, `| tee`, batch logs) one line per shard on stderr
    bar = tqdm(total=total, unit="img", desc=opts.source, disable=not opts.progress or not is_terminal(),
               dynamic_ncols=True)
    lines, started, done = opts.progress and not is_terminal(), time.monotonic(), 0

    def tasks() -> Iterator[_ShardTask]:
        nonlocal n_shards, records, done
        for index, chunk in enumerate(_chunks(items, opts.shard_size)):
            n_shards, records = index + 1, records + len(chunk)
            if _is_done(opts.out, opts.source, index, signature):
                done += len(chunk)
                bar.update(len(chunk))
                continue
            yield _ShardTask(index, chunk, to_raw, opts.out, opts.source, opts.max_side, opts.quality, signature)

    with bar, closing(ordered_map(write_shard, tasks(), opts.workers)) as parts:
        for part in parts:
            bar.update(part["records"])
            written, done = written + 1, done + part["records"]
            if lines:
                print(progress_line(f"{opts.source}: shard {written}", done, total, time.monotonic() - started,
                                    "records"), file=sys.stderr, flush=True)
            if fail_after and written >= fail_after:
                raise RuntimeError(f"{FAIL_ENV}={fail_after}: stopping after {written} shard(s)")
    _remove_stale(opts.out, opts.source, n_shards)
    data = merge_parts(opts, n_shards, records, pre_skipped, pre_dropped)
    if data["counts"]["images"] == 0 and data["skipped_total"] > 0:
        _fail_empty(opts, data)
    _atomic_write_text(opts.out / MANIFEST, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return data


# ----------------------------------------------------------------------------------------------- nothing kept
_HINTS = {
    "unreadable_image": "the image files do not decode (truncated downloads, or not images?)",
    "size_mismatch": "the image files have other aspect ratios than the annotation declares: are they the images "
                     "of this annotation release?",
    "karpathy_eval": "every image is a Karpathy test/val image (see --include-karpathy-eval)",
    "no_annotations": "no image of the annotation files has a box",
    "bad_line": "the lines are not JSON objects with an image (binary or image_rpath)",
    "empty_caption": "the texts are empty after cleaning: is the caption column the right one (--caption-col)?",
    "no_text": "the records carry no caption, region or object: is the caption column the right one?",
}


def _shorten(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def empty_run_message(opts: Options, data: dict[str, Any]) -> str:
    """Why a run kept no sample: the skip counts, the most frequent reason's likely cause, and what to check."""
    skipped = data["skipped"]
    total = data["skipped_total"]
    reason = max(skipped, key=lambda r: (skipped[r]["count"], r))
    counts = ", ".join(f"{r}={v['count']}" for r, v in sorted(skipped.items(), key=lambda kv: -kv[1]["count"]))
    lines = [f"{opts.source}: no sample kept of {total} record(s) (skipped: {counts})."]
    detail = data.get("skipped_detail", {}).get(reason)
    examples = ", ".join(skipped[reason]["examples"][:3])
    if reason == "missing_image":
        root = opts.image_root or "the folder given with --images"
        lines.append(f"No image file was found for {skipped[reason]['count']} record(s); images were searched under "
                     f"{root}.")
        lines.append(f"e.g. record {_shorten(detail)}" if detail else f"e.g. records {examples}")
        lines.append("Check --images: it must be the folder that holds the image files under the names (and "
                     "sub-folders) that the input files give.")
    else:
        lines.append(f"Most were skipped as {reason} (e.g. {examples})"
                     + (f": {_HINTS[reason]}." if reason in _HINTS else "."))
        if detail:
            lines.append(f"e.g. {_shorten(detail)}")
    lines.append(f"No manifest.json was written; skip counts and examples are in {opts.out / FAILED}.")
    return "\n".join(lines)


def _fail_empty(opts: Options, data: dict[str, Any]) -> None:
    """End a run that kept nothing: write ``manifest.failed.json``, remove its empty shards and parts (so a re-run
    with corrected inputs does not reuse them) and raise :class:`ConvertError`."""
    _atomic_write_text(opts.out / FAILED, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    for path in [*opts.out.glob(f"{opts.source}-*.tar"), *(opts.out / PARTS).glob(f"{opts.source}-*.json")]:
        path.unlink()
    raise ConvertError(empty_run_message(opts, data))


# ----------------------------------------------------------------------------------------------- CLI helpers
def add_common_args(parser: argparse.ArgumentParser, shard_size: int = 1000) -> None:
    """The options every converter takes."""
    g = parser.add_argument_group("output")
    g.add_argument("--out", required=True, type=Path, help="output directory (shards, parts/, manifest.json)")
    g.add_argument("--shard-size", type=int, default=shard_size, help=f"records per shard (default {shard_size})")
    g.add_argument("--max-side", type=int, default=MAX_SIDE, help=f"longer image side in pixels (default {MAX_SIDE})")
    g.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality of stored images (default 90)")
    g.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                   help="worker processes (the output does not depend on it)")
    g.add_argument("--overwrite", action="store_true", help="delete this source's shards in --out and start over")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def common_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """The :class:`Options` fields given by :func:`add_common_args` (all but ``source`` and ``args``)."""
    return {"out": a.out, "shard_size": a.shard_size, "max_side": a.max_side, "quality": a.jpeg_quality,
            "workers": a.workers, "overwrite": a.overwrite, "progress": not a.no_progress}


def report(manifest: dict[str, Any], out: Path, seconds: float) -> None:
    """Print a short summary of a finished conversion."""
    c = manifest["counts"]
    print(f"{manifest['source']}: {c['images']} images, {c['captions']} captions, {c['regions']} regions, "
          f"{c['objects']} objects in {len(manifest['shards'])} shards under {out} ({seconds:.1f}s)")
    for title, key in (("skipped samples", "skipped"), ("dropped annotations", "dropped")):
        if manifest.get(key):
            print(f"  {title}: " + ", ".join(f"{k}={v['count']}" for k, v in manifest[key].items()))


def cli(parser: argparse.ArgumentParser, convert: Callable[[argparse.Namespace], tuple[dict, Path]],
        argv: list[str] | None) -> int:
    """Parse ``argv``, run ``convert(namespace) -> (manifest, out)``, print the summary; input errors -> exit 2."""
    a = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        manifest, out = convert(a)
    except (ConvertError, FileNotFoundError, JsonStreamError) as err:
        parser.error(str(err))
    report(manifest, out, time.perf_counter() - start)
    return 0
