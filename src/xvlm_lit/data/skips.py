"""Counting (and rate-limited logging of) every sample or text the data pipeline skips.

Bad input never crashes a run and is never dropped silently: each skip is counted under a stable reason code and
logged on its 1st, 10th, 100th, ... occurrence per reason and process. Data workers cannot share memory, so each
step batch carries the counts of its own skips (``step["skipped"] = {reason: n}``) and the loader adds them up in
the main process (see ``PretrainDataModule.skip_counts``).

Reason codes (sample = a whole image is dropped; text = one caption / region text is dropped):
  - ``broken_tar`` (shard): the tar layer failed (truncated archive, unreadable member, duplicate member name);
    counted once per shard read; the samples it could not deliver are lost, the others are used.
  - ``missing_image`` (sample): no jpg/jpeg/png/webp member.
  - ``corrupt_image`` (sample): PIL could not decode the image (also a zero-byte file).
  - ``image_too_large`` (sample): the image declares more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (a
    decompression bomb); it is skipped before any pixel is decoded.
  - ``bad_json`` (sample): the json member is missing (shards), not valid json, or not an object.
  - ``size_mismatch`` (sample): json width/height differ from the decoded image (its boxes cannot be trusted).
  - ``no_caption`` (sample): an image-text sample without any caption.
  - ``empty_caption`` (text): a caption or region text that is empty after cleaning.
  - ``wrong_type`` (text): a caption or region text that is not a string (a number, a list, an object...).
  - ``bbox_malformed`` / ``bbox_empty`` / ``bbox_outside_image`` (text): a region/object box that is not 4 finite
    numbers / has no area / lies (more than 1 px) outside its image.
  - ``no_region_text`` (sample): a region-stream image with no usable region or object text.
  - ``sample_error`` (sample): any other exception while preparing the sample (logged with its traceback).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

LOG = logging.getLogger("xvlm_lit.data")

REASONS = (
    "broken_tar",
    "missing_image",
    "corrupt_image",
    "image_too_large",
    "bad_json",
    "size_mismatch",
    "no_caption",
    "empty_caption",
    "wrong_type",
    "bbox_malformed",
    "bbox_empty",
    "bbox_outside_image",
    "no_region_text",
    "sample_error",
)


def _should_log(n: int) -> bool:
    """Log the 1st, 10th, 100th, ... occurrence."""
    while n % 10 == 0:
        n //= 10
    return n == 1


class SkipCounter:
    """Counts skips by reason; ``drain()`` hands out (and resets) the counts since the last drain.

    ``totals`` keeps every count since construction (per process).
    """

    def __init__(self, where: str = "") -> None:
        self.where = where
        self.totals: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()

    def skip(self, reason: str, detail: str = "", exc_info: bool = False) -> None:
        """Count one skip under ``reason`` and log it (rate-limited per reason)."""
        self.totals[reason] += 1
        self._pending[reason] += 1
        n = self.totals[reason]
        if _should_log(n):
            where = f" [{self.where}]" if self.where else ""
            LOG.warning("skipped (%s, occurrence %d in this process)%s: %s", reason, n, where, detail,
                        exc_info=exc_info)

    def handler(self, exn: BaseException) -> bool:
        """A webdataset exception handler: count every exception under ``broken_tar``, log, and continue."""
        self.skip("broken_tar", f"{type(exn).__name__}: {exn}")
        return True

    def drain(self) -> dict[str, int]:
        """Counts since the previous drain (then reset)."""
        out = dict(self._pending)
        self._pending.clear()
        return out

    def pending_total(self) -> int:
        """Number of skips not yet drained."""
        return sum(self._pending.values())


def add_counts(total: Counter[str], counts: Mapping[str, int] | None) -> None:
    """Add a ``{reason: n}`` mapping into ``total`` in place."""
    for reason, n in (counts or {}).items():
        total[reason] += int(n)
