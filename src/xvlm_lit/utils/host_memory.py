"""Keep freed host memory in the process instead of handing it back to the OS after every step.

glibc's malloc serves each block above its mmap threshold (128 KiB, adaptive up to 32 MiB) with a fresh ``mmap``
and returns it with ``munmap`` when freed, and trims the heap top; the next step faults every page in again, zeroed
by the kernel. A training step on the CPU frees and re-allocates the same large buffers each time (the dense
``[vocab, hidden]`` word-embedding gradients of every text pass, the bf16 copy of the tied MLM decoder weight and
its gradient): in the tiny demo step those page faults took a third of the step (a 31 MiB ``zero_`` 36-42 ms instead
of under 1 ms on warm memory). Telling malloc to keep its memory (no mmap blocks, no trimming) makes every later
step reuse resident pages. The cost: the process keeps its peak heap resident until it exits, which a training
process reaches anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from functools import cache

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
TOP_PAD_BYTES = 512 << 20  # grow the heap in 512 MiB steps (address space only; pages become resident when touched)
NEVER_TRIM = 2**31 - 1  # mallopt takes an int: the largest threshold it accepts


@cache
def _libc() -> ctypes.CDLL | None:
    """glibc, or None on other C libraries (musl, macOS, Windows) where mallopt is absent or means other things."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Switch glibc malloc to keeping freed memory (idempotent; affects later allocations of this process and of
    processes it forks, e.g. data-loader workers). Returns False, changing nothing, where the C library is not glibc
    or refuses a setting."""
    libc = _libc()
    if libc is None:
        return False
    ok = all(libc.mallopt(param, value) == 1 for param, value in
             ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM), (M_TOP_PAD, TOP_PAD_BYTES)))
    if not ok:
        log.warning("malloc refused a setting: host memory is handed back to the OS as usual")
    return ok
