"""Progress of long loops that a person can follow both in a terminal (a tqdm bar) and in a log file (a line every
``every`` items through :mod:`logging`, so that Hydra's ``train.log``, CI logs and SLURM logs show it too)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("xvlm_lit.progress")


def is_terminal() -> bool:
    """True when stdout is an interactive terminal (not a pipe, a file, CI or a batch-system log)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN or infinite
        return "?"
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress(items: Iterable[T], desc: str, total: int | None = None, every: int = 1000, unit: str = "items",
             logger: logging.Logger = log) -> Iterator[T]:
    """Yield ``items`` unchanged while reporting progress: a tqdm bar in a terminal, otherwise one log line
    ``<desc>: 3000/12000 items (25%), 410.2 items/s, ETA 0:00:22`` every ``every`` items and one at the end
    (a loop shorter than ``every`` stays silent). ``every=0`` reports nothing."""
    if every <= 0:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if is_terminal():
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=desc, total=total, unit=unit.rstrip("s") or "it", leave=False, dynamic_ncols=True)
        return
    start, n = time.monotonic(), 0
    for n, item in enumerate(items, 1):
        yield item
        if n % every == 0:
            logger.info(progress_line(desc, n, total, time.monotonic() - start, unit))
    if n > every and n % every:
        logger.info(progress_line(desc, n, total, time.monotonic() - start, unit))


def progress_line(desc: str, done: int, total: int | None, elapsed: float, unit: str = "items") -> str:
    """``<desc>: done/total unit (pct%), rate unit/s, ETA h:mm:ss`` (no total: count and rate only)."""
    rate = done / elapsed if elapsed > 0 else float("nan")
    if total:
        eta = (total - done) / rate if rate == rate and rate > 0 else float("nan")
        return (f"{desc}: {done}/{total} {unit} ({100 * done / total:.0f}%), {rate:.1f} {unit}/s, "
                f"ETA {format_duration(eta)}")
    return f"{desc}: {done} {unit}, {rate:.1f} {unit}/s, elapsed {format_duration(elapsed)}"
