"""Exact resume: a run resumed from any step's checkpoint ends with the uninterrupted run's weights and optimizer."""

from __future__ import annotations

import pytest

from xvlm_lit.train import run

from .conftest import MAX_STEPS, assert_same_training_state, compose_run, load

pytestmark = pytest.mark.xdist_group("reliability")  # one worker: the shared runs are made once


@pytest.mark.parametrize("step", [2, 3])
def test_resume_from_a_step_checkpoint_ends_with_the_uninterrupted_weights(tmp_path, data_root, uninterrupted,
                                                                           step, recwarn):
    """Step 2 is mid-epoch (data position, worker RNGs), step 3 ends epoch 0 (the next pass is epoch 1)."""
    ckpt = uninterrupted / f"step{step:07d}.ckpt"
    saved = load(ckpt)
    (loader_state,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert (loader_state["epoch"], loader_state["batches"]) == (0, step)
    assert "rng" in saved["callbacks"]["RngState"]
    out = tmp_path / "resumed"
    metrics = run(compose_run(out, data_root, [f"trainer.max_steps={MAX_STEPS}", f"ckpt_path={ckpt}"]))
    assert metrics["global_step"] == MAX_STEPS
    assert_same_training_state(load(uninterrupted / "last.ckpt"), load(out / "checkpoints" / "last.ckpt"))
    assert not [w for w in recwarn if "not resumable" in str(w.message)]


@pytest.mark.slow
@pytest.mark.parametrize("drop", ["stream position", "random generators"])
def test_a_resume_without_the_saved_state_diverges(tmp_path, data_root, uninterrupted, drop):
    """The comparison bites: drop the loader state (the data restarts at the epoch's first batch) or the random
    generators (other dropout masks) and the final weights differ."""
    import torch

    saved = load(uninterrupted / "step0000002.ckpt")
    if drop == "stream position":
        del saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    else:
        del saved["callbacks"]["RngState"]
    stripped = tmp_path / "stripped.ckpt"
    torch.save(saved, stripped)
    out = tmp_path / "resumed"
    run(compose_run(out, data_root, [f"trainer.max_steps={MAX_STEPS}", f"ckpt_path={stripped}"]))
    with pytest.raises(AssertionError):
        assert_same_training_state(load(uninterrupted / "last.ckpt"), load(out / "checkpoints" / "last.ckpt"))

