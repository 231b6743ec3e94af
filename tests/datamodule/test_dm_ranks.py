"""Ranks and workers: one region schedule everywhere, disjoint training samples, validation read exactly once."""

from __future__ import annotations

import itertools

import torch

from data_prep.shards import read_samples
from xvlm_lit.data.datamodule import PretrainDataModule
from xvlm_lit.data.decode import stable_id
from xvlm_lit.data.schedule import region_schedule, worker_steps
from xvlm_lit.data.streams import PretrainStream

from .conftest import N_VAL, R


def _pattern(steps: list[dict]) -> list[bool]:
    return [s["region"] is not None for s in steps]


def test_region_schedule_is_a_pure_function_of_seed_and_step():
    draws = [region_schedule(5, s, 0.5) for s in range(4000)]
    assert draws == [region_schedule(5, s, 0.5) for s in range(4000)]
    assert abs(sum(draws) / 4000 - 0.5) < 0.03
    assert draws != [region_schedule(6, s, 0.5) for s in range(4000)]
    assert not any(region_schedule(5, s, 0.0) for s in range(100)) and all(region_schedule(5, s, 1.0)
                                                                          for s in range(100))
    assert list(worker_steps(2, 10, 1, 3)) == [21, 24, 27]


def test_two_ranks_share_the_region_schedule_and_read_disjoint_samples(make_dm):
    steps = {r: list(make_dm(rank=r, world_size=2, epoch_steps=5, batch_size=6).train_dataloader()) for r in (0, 1)}
    expected = [region_schedule(7, s, 0.5) for s in range(5)]
    assert _pattern(steps[0]) == _pattern(steps[1]) == expected
    assert any(expected) and not all(expected)
    for stream in ("itc", "region"):
        ids = {r: {int(i) for s in steps[r] if s[stream] is not None
                   for i, v in zip(s[stream].idx, s[stream].valid, strict=True) if v} for r in (0, 1)}
        assert ids[0] and ids[1] and not ids[0] & ids[1]


def test_simulated_workers_build_their_global_steps(make_dm):
    dm = make_dm(rank=1, world_size=2, epoch_steps=7)
    stream = PretrainStream(dm.train_sources, dm.settings, rank=1, world_size=2)
    for epoch in (0, 3):
        per_worker = [list(stream.iterate(w, 2, epoch)) for w in (0, 1)]
        assert [len(p) for p in per_worker] == [4, 3]
        merged = [s for pair in itertools.zip_longest(*per_worker) for s in pair if s is not None]
        assert _pattern(merged) == [region_schedule(7, epoch * 7 + k, 0.5) for k in range(7)]
        other = make_dm(rank=0, world_size=2, epoch_steps=7, num_workers=2)
        peer = PretrainStream(other.train_sources, other.settings, rank=0, world_size=2)
        merged0 = [s for pair in itertools.zip_longest(*[peer.iterate(w, 2, epoch) for w in (0, 1)])
                   for s in pair if s is not None]
        assert _pattern(merged0) == _pattern(merged)


def test_loader_with_a_worker_process_matches_the_in_process_stream_and_advances_epochs(make_dm):
    in_process = make_dm(epoch_steps=3).train_dataloader()
    with_worker = make_dm(epoch_steps=3, num_workers=1).train_dataloader()
    epochs = []
    for _ in range(2):
        a, b = list(in_process), list(with_worker)
        assert len(a) == len(b) == len(with_worker) == 3
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x["itc"].idx, y["itc"].idx) and torch.equal(x["itc"].images, y["itc"].images)
            assert (x["region"] is None) == (y["region"] is None)
        epochs.append(torch.cat([x["itc"].idx for x in a]))
    assert in_process.passes == 2 and not torch.equal(epochs[0], epochs[1])  # epoch 1 is reshuffled
    first, second = [torch.cat([s["itc"].idx for s in make_dm(epoch_steps=3).train_dataloader()]) for _ in range(2)]
    assert torch.equal(first, second)  # same seed, same epoch: same data


def _val_dm(shapes_dir, rank: int, world: int, **kw) -> PretrainDataModule:
    dm = PretrainDataModule(
        sources=[{"name": "shapes", "urls": str(shapes_dir / "train"), "streams": ["itc", "region"]}],
        val_sources=[{"name": "shapes_val", "urls": str(shapes_dir / "val"), "streams": ["itc", "region"]}],
        image_size=R, patch_size=16, max_tokens=24, max_masks=4, batch_size=8, val_batch_size=kw.pop("vb", 7),
        region_batch_size=12, region_images=3, num_workers=0, seed=7, rank=rank, world_size=world, **kw)
    dm.setup("fit")
    return dm


def test_validation_reads_every_sample_exactly_once_across_two_ranks(shapes_dir):
    val_ids = [stable_id(s["json"]["image_id"]) for p in sorted((shapes_dir / "val").glob("*.tar"))
               for s in read_samples(p)]
    assert len(val_ids) == N_VAL
    seen = {}
    for rank in (0, 1):
        loader = _val_dm(shapes_dir, rank, 2).val_dataloader()
        batches = list(loader)
        assert len(batches) == len(loader) == 5  # ceil(ceil(60 / 2) / 7), the same on both ranks
        assert all(b["itc"].num_texts == 7 and b["region"].num_texts == 12 for b in batches)
        seen[rank] = [int(i) for b in batches for i, v in zip(b["itc"].idx, b["itc"].valid, strict=True) if v]
        assert seen[rank] == val_ids[rank::2]  # in order, every other sample
    assert sorted(seen[0] + seen[1]) == sorted(val_ids)


def test_validation_is_deterministic_and_independent_of_workers(shapes_dir):
    dm = _val_dm(shapes_dir, 0, 1)
    once = list(dm.val_dataloader())
    again = list(dm.val_dataloader())
    stream = dm.val_dataloader().dataset
    split = [s for pair in itertools.zip_longest(stream.iterate(0, 2), stream.iterate(1, 2)) for s in pair
             if s is not None]
    for a, b, c in zip(once, again, split, strict=True):
        for name in ("images", "text_ids", "masked_ids", "masked_pos", "idx", "valid"):
            assert torch.equal(getattr(a["itc"], name), getattr(b["itc"], name))
            assert torch.equal(getattr(a["itc"], name), getattr(c["itc"], name))
        assert torch.equal(a["region"].target_box, c["region"].target_box)
