"""Resumable training stream: a pass started at step batch n equals the tail of an uninterrupted pass."""

from __future__ import annotations

import itertools

import pytest
import torch

from xvlm_lit.data.streams import PretrainStream


def _same(a: dict, b: dict) -> bool:
    """Two step batches are equal: images, texts, MLM masks, region slots (the skip counters aside)."""
    for key in ("itc", "region"):
        x, y = a[key], b[key]
        if (x is None) != (y is None):
            return False
        if x is None:
            continue
        for name, value in vars(x).items():
            other = getattr(y, name)
            if isinstance(value, torch.Tensor):
                if not torch.equal(value, other):
                    return False
            elif value != other:
                return False
    return True


def _round_robin(stream: PretrainStream, workers: int, epoch: int, start: int) -> list[dict]:
    """What a DataLoader with ``workers`` worker processes hands out: worker 0, 1, ... in turn."""
    parts = [stream.iterate(w, workers, epoch, start) for w in range(workers)]
    return [s for group in itertools.zip_longest(*parts) for s in group if s is not None]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_a_pass_started_at_n_is_the_tail_of_the_uninterrupted_pass(make_dm, workers):
    dm = make_dm(epoch_steps=7, num_workers=workers)
    stream = PretrainStream(dm.train_sources, dm.settings)
    full = _round_robin(stream, workers, epoch=1, start=0)
    assert len(full) == 7
    for start in (1, 2, 5):
        tail = _round_robin(stream, workers, epoch=1, start=start)
        assert len(tail) == 7 - start
        assert all(_same(a, b) for a, b in zip(full[start:], tail, strict=True)), (workers, start)
    assert not _same(full[0], full[1])  # the comparison can tell batches apart
    assert _round_robin(stream, workers, epoch=1, start=7) == []


def test_loader_state_round_trip_resumes_mid_epoch_and_then_runs_whole_epochs(make_dm):
    """Consume 3 of 5 batches of epoch 0 (2 worker processes), save the state, restore it in a fresh loader: the
    rest of epoch 0 (the workers rotated: step 3 comes from the first one) and all of epoch 1 equal an
    uninterrupted loader's."""
    reference = make_dm(epoch_steps=5, num_workers=2).train_dataloader()
    expected = [b for _ in range(2) for b in reference]
    first = make_dm(epoch_steps=5, num_workers=2).train_dataloader()
    batches = iter(first)
    taken = list(itertools.islice(batches, 3))
    del batches
    state = first.state_dict()
    assert state["epoch"] == 0 and state["batches"] == 3
    resumed = make_dm(epoch_steps=5, num_workers=2).train_dataloader()
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert resumed.state_dict()["batches"] == 5
    rest += list(resumed)  # epoch 1: a whole pass, no skip left over
    got = taken + rest
    assert len(got) == len(expected) == 10
    assert all(_same(a, b) for a, b in zip(expected, got, strict=True))


def test_a_state_of_another_epoch_is_not_applied(make_dm):
    loader = make_dm(epoch_steps=3).train_dataloader()
    loader.load_state_dict({"epoch": 5, "batches": 2})
    assert len(list(loader)) == 3  # pass 0 is epoch 0: the state of epoch 5 does not shorten it


def test_the_train_loader_does_not_touch_torchs_global_generator(make_dm):
    loader = make_dm(epoch_steps=2).train_dataloader()
    before = torch.get_rng_state()
    list(loader)
    assert torch.equal(before, torch.get_rng_state())
