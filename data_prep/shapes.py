"""A synthetic "shapes world" corpus in the shard schema: coloured shapes with captions, regions and objects.

Run ``python -m data_prep.shapes --out DIR --train 4000 --val 600 --seed 0 --size 128 --workers 2``. It writes
``DIR/train/shapes-%06d.tar`` and ``DIR/val/shapes-%06d.tar`` with a ``manifest.json`` each, and ``DIR/shapes.json``
with the generator arguments and the shard lists. Every image is drawn from its own seed (seed, split, index), so
the same arguments give byte-identical shards whatever the number of workers.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from data_prep import shapes_text
from data_prep.shapes_draw import render
from data_prep.shards import Manifest, ShardSink, encode_jpeg

SOURCE = "shapes"
VERSION = 1  # bump when the drawing or the text changes, so ensure_shapes_world regenerates old corpora
SPLITS = {"train": 0, "val": 1}
MIN_SIZE, MAX_SIZE = 96, 160
JPEG_QUALITY = 92
INFO_FILE = "shapes.json"


def make_sample(seed: int, split: str, index: int, size: int) -> tuple[str, bytes, dict[str, Any]]:
    """Draw sample ``index`` of ``split``; returns (key, jpg bytes, json record)."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    image, shapes, texture = render(rng, size)
    key = f"{split}-{index:06d}"
    record = {
        "image_id": f"{SOURCE}/{key}",
        "source": SOURCE,
        "width": size,
        "height": size,
        "captions": shapes_text.captions(rng, shapes, size, texture),
        "regions": shapes_text.regions(rng, shapes, size),
        "objects": shapes_text.objects(shapes),
    }
    return key, encode_jpeg(image, JPEG_QUALITY), record


def _make_sample_task(task: tuple[int, str, int, int]) -> tuple[str, bytes, dict[str, Any]]:
    return make_sample(*task)


def _samples(seed: int, split: str, n: int, size: int, workers: int) -> Iterator[tuple[str, bytes, dict]]:
    tasks = [(seed, split, i, size) for i in range(n)]
    if workers <= 1 or n < 64:
        yield from map(_make_sample_task, tasks)
        return
    with multiprocessing.get_context().Pool(workers) as pool:
        yield from pool.imap(_make_sample_task, tasks, chunksize=max(16, n // (workers * 8)))


def _clear_split(split_dir: Path) -> None:
    """Remove shards and manifest of an earlier run (only our own file names)."""
    for path in split_dir.glob(f"{SOURCE}-*.tar"):
        path.unlink()
    (split_dir / "manifest.json").unlink(missing_ok=True)


def write_split(out_dir: Path, split: str, n: int, args: dict[str, Any], workers: int) -> Manifest:
    """Generate one split into ``out_dir/split`` and return its manifest."""
    split_dir = out_dir / split
    split_dir.mkdir(parents=True, exist_ok=True)
    _clear_split(split_dir)
    with ShardSink(split_dir, SOURCE, max_count=args["shard_size"], source=SOURCE,
                   args={**args, "split": split, "n": n}) as sink:
        for key, jpg, record in _samples(args["seed"], split, n, args["size"], workers):
            sink.add(key, jpg, record)
    return sink.manifest


def _generator_args(n_train: int, n_val: int, seed: int, size: int, shard_size: int) -> dict[str, Any]:
    return {"version": VERSION, "n_train": n_train, "n_val": n_val, "seed": seed, "size": size,
            "shard_size": shard_size}


def _check_args(n_train: int, n_val: int, size: int, shard_size: int) -> None:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be in [{MIN_SIZE}, {MAX_SIZE}], got {size}")
    if n_train < 0 or n_val < 0:
        raise ValueError(f"split sizes must be >= 0, got train={n_train} val={n_val}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")


def generate_shapes_world(out_dir: str | os.PathLike, n_train: int = 4000, n_val: int = 600, seed: int = 0,
                          size: int = 128, shard_size: int = 500, workers: int = 1) -> Path:
    """Write the train and val splits and ``shapes.json`` under ``out_dir``; returns ``out_dir`` as a Path."""
    _check_args(n_train, n_val, size, shard_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / INFO_FILE).unlink(missing_ok=True)  # written last: its presence marks a finished corpus
    args = _generator_args(n_train, n_val, seed, size, shard_size)
    splits = {}
    for split, n in (("train", n_train), ("val", n_val)):
        manifest = write_split(out, split, n, args, workers)
        splits[split] = {"samples": manifest.counts["images"], "shards": [s["name"] for s in manifest.shards]}
    info = {"generator": "data_prep.shapes", "args": args, "splits": splits}
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out


def read_info(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``shapes.json`` of a finished corpus, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(out_dir) / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_complete(out: Path, info: dict[str, Any]) -> bool:
    return all((out / split / name).is_file() for split, s in info["splits"].items() for name in s["shards"])


def ensure_shapes_world(out_dir: str | os.PathLike, n_train: int = 4000, n_val: int = 600, seed: int = 0,
                        size: int = 128, shard_size: int = 500, workers: int = 1) -> Path:
    """Return ``out_dir``, generating the corpus first unless one with the same arguments is already there.

    Safe to call from several processes at once (the jobs of a sweep sharing one data directory): an exclusive
    lock on ``<out_dir>.lock`` makes the others wait for the first one's corpus instead of reading it half-written.
    """
    _check_args(n_train, n_val, size, shard_size)
    wanted = _generator_args(n_train, n_val, seed, size, shard_size)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        info = read_info(out)
        if info is not None and info.get("args") == wanted and _is_complete(out, info):
            return out
        return generate_shapes_world(out, n_train, n_val, seed, size, shard_size, workers)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m data_prep.shapes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--train", type=int, default=4000, help="number of training images (default 4000)")
    parser.add_argument("--val", type=int, default=600, help="number of validation images (default 600)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=128, help=f"image side in pixels, {MIN_SIZE}-{MAX_SIZE}")
    parser.add_argument("--shard-size", type=int, default=500, help="samples per shard (default 500)")
    parser.add_argument("--workers", type=int, default=1, help="drawing processes (output does not depend on it)")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing when OUT already holds a corpus made with the same arguments")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.shapes``."""
    a = build_parser().parse_args(argv)
    fn = ensure_shapes_world if a.if_missing else generate_shapes_world
    start = time.perf_counter()
    try:
        out = fn(a.out, a.train, a.val, a.seed, a.size, a.shard_size, a.workers)
    except ValueError as err:
        build_parser().error(str(err))
    info = read_info(out)
    for split, s in info["splits"].items():
        print(f"{split}: {s['samples']} samples in {len(s['shards'])} shards under {out / split}")
    print(f"done in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
