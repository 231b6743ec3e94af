"""Preemption: SIGTERM / SIGUSR1 sent to a running job -> last.ckpt at the step reached, exit 143, exact resume;
under SLURM (simulated: its variables and a fake ``scontrol``) SIGUSR1 also requeues the job through Lightning."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from xvlm_lit.callbacks import PREEMPTED_EXIT_CODE
from xvlm_lit.train import build_trainer, run

from .conftest import MAX_STEPS, assert_same_training_state, compose_run, load, start, train_cmd, wait_for

pytestmark = pytest.mark.xdist_group("reliability")  # one worker: the shared runs are made once

SLURM = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "xvlm",
         "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}


def _stop_after(out: Path, step: int, proc, signum: int, group: bool) -> dict:
    """Send ``signum`` once step ``step`` is checkpointed; return last.ckpt after the process exited."""
    wait_for(out / "checkpoints" / f"step{step:07d}.ckpt", proc)
    if group:  # as a scheduler does: the main process and its data workers
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == PREEMPTED_EXIT_CODE, output[-3000:]
    last = load(out / "checkpoints" / "last.ckpt")
    steps = sorted(int(p.stem[4:]) for p in (out / "checkpoints").glob("step*.ckpt"))
    assert step <= last["global_step"] < MAX_STEPS
    assert last["global_step"] == steps[-1], (last["global_step"], steps)  # the step reached, nothing lost
    return last


class SignalAt(Callback):
    """Sends ``signum`` to this very process at the end of training step ``step`` (mid-run, like a scheduler)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def _fake_scontrol(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """SLURM's variables and a PATH whose ``scontrol`` records its arguments in the returned log file."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol.log"
    bin_dir.mkdir()
    fake = bin_dir / "scontrol"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    return {**SLURM, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, calls


@pytest.mark.parametrize("case", ["SIGTERM", "SIGUSR1", "SIGUSR1 under SLURM"])
def test_a_signal_mid_run_saves_the_step_reached_and_stops(tmp_path, data_root, uninterrupted, monkeypatch, case):
    """In-process: the signal arrives during step 2's hooks; training stops at that step boundary and the only
    checkpoint (the regular ones are every 100 steps) is last.ckpt, equal to the uninterrupted run's step 2; under
    SLURM Lightning also writes hpc_ckpt_1.ckpt and runs ``scontrol requeue <job id>``."""
    signum = signal.SIGTERM if case == "SIGTERM" else signal.SIGUSR1
    calls = None
    if "SLURM" in case:
        env, calls = _fake_scontrol(tmp_path)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
    out = tmp_path / "run"
    cfg = compose_run(out, data_root, [f"trainer.max_steps={MAX_STEPS}",
                                       "callbacks.checkpoint.every_n_train_steps=100"])
    original = build_trainer

    def with_signal(cfg):
        trainer = original(cfg)
        trainer.callbacks.insert(0, SignalAt(2, signum))
        return trainer

    monkeypatch.setattr("xvlm_lit.train.build_trainer", with_signal)
    with pytest.raises(SIGTERMException):
        run(cfg)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["last.ckpt"]
    last = load(out / "checkpoints" / "last.ckpt")
    assert_same_training_state(load(uninterrupted / "step0000002.ckpt"), last)
    (ckpt_state,) = [v for k, v in last["callbacks"].items() if k.startswith("FinalCheckpoint")]
    assert ckpt_state["last_model_path"] == str(out / "checkpoints" / "last.ckpt")  # resumed: no last-v1.ckpt
    hpc = out / "hpc_ckpt_1.ckpt"
    if calls is None:
        assert not hpc.exists()
    else:
        assert calls.read_text().split() == ["requeue", "4242"]
        assert_same_training_state(load(hpc), last)


def test_a_stop_on_an_epochs_last_step_resumes_exactly(tmp_path, data_root, uninterrupted, monkeypatch):
    """SIGTERM during step 3, the last of epoch 0: Lightning stops after closing the epoch; resumed, the run must
    still train all 3 steps of epoch 1 on epoch 1's data and end with the uninterrupted weights."""
    out = tmp_path / "run"
    original = build_trainer

    def with_signal(cfg):
        trainer = original(cfg)
        trainer.callbacks.insert(0, SignalAt(3, signal.SIGTERM))
        return trainer

    monkeypatch.setattr("xvlm_lit.train.build_trainer", with_signal)
    with pytest.raises(SIGTERMException):
        run(compose_run(out, data_root, [f"trainer.max_steps={MAX_STEPS}"]))
    monkeypatch.setattr("xvlm_lit.train.build_trainer", original)
    last = out / "checkpoints" / "last.ckpt"
    assert load(last)["global_step"] == 3
    run(compose_run(out, data_root, [f"trainer.max_steps={MAX_STEPS}", f"ckpt_path={last}"]))
    resumed = out / "checkpoints"
    for step in (4, 7):  # step 4 begins epoch 1 in both runs
        assert_same_training_state(load(uninterrupted / f"step{step:07d}.ckpt"), load(resumed / f"step{step:07d}.ckpt"))


@pytest.mark.slow
def test_sigterm_to_the_process_group_checkpoints_exits_and_resumes_exactly(tmp_path, data_root, uninterrupted):
    out = tmp_path / "run"
    proc = start(train_cmd(out, data_root, [f"trainer.max_steps={MAX_STEPS}"]), tmp_path)
    last = _stop_after(out, 2, proc, signal.SIGTERM, group=True)
    step_file = load(out / "checkpoints" / f"step{last['global_step']:07d}.ckpt")
    assert_same_training_state(step_file, last)

    run(compose_run(out, data_root, [f"trainer.max_steps={MAX_STEPS}",
                                     f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"]))
    assert_same_training_state(load(uninterrupted / "last.ckpt"), load(out / "checkpoints" / "last.ckpt"))


@pytest.mark.slow
def test_slurm_sigusr1_requeues_through_scontrol_and_the_requeued_job_resumes(tmp_path, data_root, uninterrupted,
                                                                              monkeypatch):
    env, calls = _fake_scontrol(tmp_path)
    out = tmp_path / "run"
    proc = start(train_cmd(out, data_root, [f"trainer.max_steps={MAX_STEPS}"]), tmp_path, **env)
    last = _stop_after(out, 2, proc, signal.SIGUSR1, group=False)
    assert calls.read_text().split() == ["requeue", "4242"]
    hpc = load(out / "hpc_ckpt_1.ckpt")  # Lightning's requeue checkpoint, written at the same step boundary
    assert_same_training_state(hpc, last)

    # the requeued job: same command, same run directory, no ckpt_path -> Lightning picks hpc_ckpt_1.ckpt
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    metrics = run(compose_run(out, data_root, [f"trainer.max_steps={MAX_STEPS}"]))
    assert metrics["global_step"] == MAX_STEPS
    assert_same_training_state(load(uninterrupted / "last.ckpt"), load(out / "checkpoints" / "last.ckpt"))


@pytest.mark.slow
def test_sigusr1_to_rank_zero_stops_both_ddp_ranks_after_the_same_step(tmp_path, data_root):
    """2 gloo ranks, the signal to rank 0 only: both ranks agree on the stop step (without the agreement rank 1
    would start the next step while rank 0 saves, and the collectives would not match), last.ckpt is written at
    the newest step and the job exits with 143."""
    out = tmp_path / "run"
    proc = start(train_cmd(out, data_root, [f"trainer.max_steps={MAX_STEPS}", "trainer.devices=2",
                                            "trainer.strategy=ddp"]), tmp_path)
    _stop_after(out, 2, proc, signal.SIGUSR1, group=False)
