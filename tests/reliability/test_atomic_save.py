"""Atomic checkpoint writes: a process killed in the middle of saving leaves the previous checkpoint loadable."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xvlm_lit.callbacks import atomic_io
from xvlm_lit.callbacks.atomic_io import AtomicCheckpointIO, atomic_torch_save

from .conftest import child_env, compose_run

pytestmark = pytest.mark.xdist_group("reliability")  # one worker: the shared runs are made once

# saves step 1, then dies (SIGKILL) after writing the first half of step 2's bytes
DIE_MID_SAVE = r"""
import io, os, signal, sys
import torch
from xvlm_lit.callbacks import atomic_io

target = sys.argv[1]
io_ = atomic_io.AtomicCheckpointIO()
io_.save_checkpoint({"step": 1, "w": torch.arange(50_000.0)}, target)
real_save = torch.save

def half_then_die(obj, fh, *args, **kwargs):
    buf = io.BytesIO()
    real_save(obj, buf, *args, **kwargs)
    data = buf.getvalue()
    fh.write(data[: len(data) // 2])
    fh.flush()
    os.fsync(fh.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

atomic_io.torch.save = half_then_die
io_.save_checkpoint({"step": 2, "w": torch.zeros(50_000)}, target)
"""


def test_sigkill_in_the_middle_of_a_save_keeps_the_previous_checkpoint(tmp_path):
    target = tmp_path / "checkpoints" / "last.ckpt"
    done = subprocess.run([sys.executable, "-c", DIE_MID_SAVE, str(target)], env=child_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    leftovers = list(target.parent.glob(".last.ckpt.tmp-*"))
    assert len(leftovers) == 1 and 0 < leftovers[0].stat().st_size  # the half-written bytes went there
    with pytest.raises(Exception):  # noqa: B017 - the partial file is unreadable (whatever torch raises)
        torch.load(leftovers[0], weights_only=True)
    kept = torch.load(target, weights_only=True)
    assert kept["step"] == 1 and torch.equal(kept["w"], torch.arange(50_000.0))

    atomic_torch_save({"step": 3}, target)  # the next save replaces the file and removes the leftover
    assert torch.load(target, weights_only=True) == {"step": 3}
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def test_an_error_during_a_save_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, target)

    def broken(obj, fh, *args, **kwargs):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(atomic_io.torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        AtomicCheckpointIO().save_checkpoint({"step": 2}, target)
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_the_trainer_configs_write_checkpoints_atomically(tmp_path):
    from xvlm_lit.train import build_trainer

    trainer = build_trainer(compose_run(tmp_path / "run", tmp_path / "data", []))
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    names = {type(cb).__name__ for cb in trainer.callbacks}
    assert {"RngState", "Preemption", "FinalCheckpoint"} <= names


def test_remote_paths_fall_back_to_lightnings_writer(tmp_path, monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr("lightning.pytorch.plugins.io.TorchCheckpointIO.save_checkpoint",
                        lambda self, ckpt, path, storage_options=None: seen.append(str(path)))
    AtomicCheckpointIO().save_checkpoint({"step": 1}, "memory://bucket/last.ckpt")
    assert seen == ["memory://bucket/last.ckpt"]
    assert not any(Path(tmp_path).iterdir())
