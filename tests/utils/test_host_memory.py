"""keep_freed_memory: a freed large buffer is reused without page faults (checked in fresh processes)."""

import json
import subprocess
import sys

import pytest

from xvlm_lit.utils.host_memory import _libc, keep_freed_memory

PROBE = """
import json, resource, sys, torch
from xvlm_lit.utils.host_memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
def touch():
    x = torch.empty(16 << 20, dtype=torch.float32)  # 64 MiB, far above malloc's mmap threshold
    x.fill_(1.0)
    del x
for _ in range(10):  # kept: the heap settles within a few rounds (aligned blocks need a few free chunks)
    touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    touch()
print(json.dumps({"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""

PAGES_64MIB = (64 << 20) // 4096

needs_glibc = pytest.mark.skipif(_libc() is None, reason="glibc malloc only")


def probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_glibc
def test_kept_memory_is_reused_without_page_faults():
    system, kept = probe("system"), probe("keep")
    assert kept["kept"] is True and system["kept"] is False
    # by default every 64 MiB buffer is a fresh mmap: each of the 5 rounds faults its ~16k pages in again
    assert system["faults"] > 4 * PAGES_64MIB
    # kept: the pages of earlier rounds stay resident and are reused
    assert kept["faults"] < PAGES_64MIB // 10


@needs_glibc
def test_switch_is_idempotent():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True


def test_non_glibc_changes_nothing(monkeypatch):
    import xvlm_lit.utils.host_memory as hm

    monkeypatch.setattr(hm, "_libc", lambda: None)
    assert hm.keep_freed_memory() is False
