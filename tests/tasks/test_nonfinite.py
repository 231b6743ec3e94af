"""A non-finite total loss skips the step (no update, counted, logged), on every rank; N in a row stop the run."""

import pytest
import torch

from tests.tasks.nonfinite_plugins import Snapshots, build, loader, trainer

pytestmark = pytest.mark.xdist_group("distributed")


def test_nan_step_is_skipped_counted_and_training_goes_on():
    snaps = Snapshots()
    module = build(nan_calls={1})
    trainer(4, [snaps], devices=1).fit(module, loader(4))
    w = snaps.weights
    assert torch.equal(w[1], w[0])  # step 1: NaN -> no update (even with gradient clipping on)
    assert not torch.equal(w[2], w[1]) and not torch.equal(w[0], w[3])  # the other steps do update
    assert all(torch.isfinite(x).all() for x in w)
    assert snaps.adam_steps == [1, 1, 2, 3]  # AdamW's moments untouched by the skipped step
    assert module.nonfinite_skipped == 1 and module._nonfinite_in_a_row == 0
    assert float(module.trainer.callback_metrics["train/nonfinite_skipped"]) == 1.0


def test_too_many_nonfinite_steps_in_a_row_stop_with_step_and_terms():
    module = build(nan_calls={1, 2, 3}, max_nonfinite_steps=3)
    with pytest.raises(RuntimeError, match=r"step 3: .*3 steps in a row") as err:
        trainer(6, [], devices=1).fit(module, loader(6))
    msg = str(err.value)
    assert "task.max_nonfinite_steps=3" in msg and "spike_loss=nan" in msg and "loss=nan" in msg
    assert "itc/itc_loss=" in msg and "mlm_loss=" in msg and "temp=" not in msg


def test_nonfinite_run_resets_after_a_good_step():
    module = build(nan_calls={0, 1, 3, 4}, max_nonfinite_steps=3)
    trainer(5, [], devices=1).fit(module, loader(5))  # never 3 in a row: no error
    assert module.nonfinite_skipped == 4


def test_bad_limit_is_an_error():
    with pytest.raises(ValueError, match="max_nonfinite_steps"):
        build(set(), max_nonfinite_steps=0)


def test_two_ranks_both_skip_when_only_one_has_nan(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    module = build(nan_calls={1}, ranks={1})
    trainer(3, [Snapshots(str(tmp_path))], devices=2, strategy="ddp_spawn").fit(module, loader(6))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for out in ranks:
        w = out["weights"]
        assert torch.equal(w[1], w[0]) and not torch.equal(w[2], w[1])
        assert out["adam_steps"] == [1, 1, 2] and out["skipped"] == 1 and out["logged"] == 1.0
    for a, b in zip(ranks[0]["weights"], ranks[1]["weights"], strict=True):
        assert torch.equal(a, b)  # both ranks skipped together and stayed identical
