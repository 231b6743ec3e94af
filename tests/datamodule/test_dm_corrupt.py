"""Bad input is skipped and counted (never a crash, never silent)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from xvlm_lit.data.decode import stable_id
from xvlm_lit.data.skips import SkipCounter

from .conftest import jpeg_bytes, record, sample_members, write_tar

GOOD_REGION = {"bbox": [4, 4, 30, 30], "captions": ["a red square"], "attributes": []}


@pytest.fixture(scope="module")
def corrupt_dir(tmp_path_factory, train_samples) -> Path:
    """Two shards: good samples mixed with every kind of bad one, and a truncated archive."""
    out = tmp_path_factory.mktemp("corrupt")
    members = []
    for s in train_samples[:6]:
        members += sample_members(s["__key__"], s["jpg"], s["json"])
    jpg = jpeg_bytes((48, 40))
    members += sample_members("badjpg", b"\xff\xd8 definitely not a jpeg", record("t/badjpg", (48, 40), ["a cat"]))
    members += sample_members("badjson", jpg, b'{"image_id": "t/badjson", "captions": [')
    outside = record("t/outside", (48, 40), ["a dog"], [GOOD_REGION],
                     [{"bbox": [30, 20, 40, 40], "label": "zebra", "attributes": []}])
    members += sample_members("outside", jpg, outside)
    members += sample_members("emptycap", jpg, record("t/emptycap", (48, 40), ["!!! ...", "  "], [GOOD_REGION]))
    members += [("nojpg.json", json.dumps(record("t/nojpg", (48, 40), ["a bird"])).encode())]
    write_tar(out / "a-000000.tar", members)
    tail = []
    for s in train_samples[6:9]:
        tail += sample_members(s["__key__"], s["jpg"], s["json"])
    path = write_tar(out / "a-000001.tar", tail)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])  # cut inside the second sample
    return out


def test_corrupt_samples_are_skipped_and_counted(make_dm, corrupt_dir, tokenizer, caplog):
    dm = make_dm(sources=[{"name": "bad", "urls": str(corrupt_dir), "streams": ["itc", "region"]}],
                 batch_size=4, region_batch_size=8, region_images=3, region_prob=1.0, epoch_steps=10,
                 shuffle_buffer=4)
    with caplog.at_level(logging.WARNING, logger="xvlm_lit.data"):
        steps = list(dm.train_dataloader())
    assert len(steps) == 10
    per_batch = Counter()
    for s in steps:
        per_batch.update(s["skipped"])
    assert per_batch == Counter(dm.skip_counts())
    for reason in ("corrupt_image", "bad_json", "bbox_outside_image", "empty_caption", "missing_image",
                   "broken_tar"):
        assert per_batch[reason] >= 1, (reason, per_batch)
    bad_ids = {stable_id(f"t/{k}") for k in ("badjpg", "badjson", "nojpg", "emptycap")}
    assert not bad_ids & {int(i) for s in steps for i in s["itc"].idx}
    region_texts = {tokenizer.decode(row[1:int(m.sum())]) for s in steps
                    for row, m in zip(s["region"].text_ids, s["region"].text_mask, strict=True)}
    assert "a red square" in region_texts and "zebra" not in region_texts
    logged = [r for r in caplog.records if "corrupt_image" in r.getMessage()]
    n = per_batch["corrupt_image"]  # one process (num_workers=0): logged on the 1st, 10th, 100th occurrence
    assert len(logged) == sum(n >= k for k in (1, 10, 100)), (n, len(logged))


def test_validation_over_corrupt_shards_keeps_every_good_sample_once(make_dm, corrupt_dir):
    src = [{"name": "bad", "urls": str(corrupt_dir), "streams": ["itc", "region"]}]
    dm = make_dm(val_sources=src, batch_size=4, region_batch_size=8, region_images=3)
    dm.setup("validate")
    batches = list(dm.val_dataloader())
    ids = [int(i) for b in batches for i, v in zip(b["itc"].idx, b["itc"].valid, strict=True) if v]
    assert len(ids) == len(set(ids)) and stable_id("t/outside") in ids
    assert not {stable_id(f"t/{k}") for k in ("badjpg", "badjson", "nojpg", "emptycap")} & set(ids)
    skipped = Counter()
    for b in batches:
        skipped.update(b["skipped"])
    # each problem counted once although both streams read the sample (a sample cut short by the truncated
    # archive may add one more bad_json: its json member is missing)
    assert skipped["corrupt_image"] == 1 and skipped["missing_image"] == 1 and 1 <= skipped["bad_json"] <= 2
    assert skipped["empty_caption"] == 2 and skipped["bbox_outside_image"] == 1 and skipped["broken_tar"] == 1


def test_a_source_with_nothing_usable_raises_a_clear_error(make_dm, tmp_path):
    members = []
    for k in range(3):
        members += sample_members(f"k{k}", b"garbage", record(f"t/k{k}", (48, 40), ["a cat"]))
    write_tar(tmp_path / "bad-000000.tar", members)
    dm = make_dm(sources=[{"name": "hopeless", "urls": str(tmp_path)}], region_prob=0.0)
    with pytest.raises(RuntimeError, match="source 'hopeless'.*corrupt_image"):
        next(iter(dm.train_dataloader()))


def test_skip_counter_drains_and_rate_limits(caplog):
    counter = SkipCounter("test")
    with caplog.at_level(logging.WARNING, logger="xvlm_lit.data"):
        for _ in range(120):
            counter.skip("bad_json", "x")
    assert counter.drain() == {"bad_json": 120} and counter.drain() == {}
    assert counter.totals["bad_json"] == 120
    assert len(caplog.records) == 3  # occurrences 1, 10 and 100
    assert counter.handler(OSError("truncated")) is True and counter.drain() == {"broken_tar": 1}


def test_sample_maker_counts_sample_level_reasons_and_survives_bugs(monkeypatch):
    from xvlm_lit.data.samples import SampleMaker
    from xvlm_lit.data.sources import SourceSpec

    spec = SourceSpec("t", ["unused.tar"], streams=("itc", "region"))
    counter = SkipCounter()
    maker = SampleMaker(32, 30, train=False, counter=counter)
    jpg = jpeg_bytes((48, 40))

    def raw(rec):
        return {"__key__": rec["image_id"], "jpg": jpg, "json": json.dumps(rec).encode()}

    assert maker.itc(raw(record("nocap", (48, 40), [], [GOOD_REGION])), spec) is None
    assert maker.itc(raw(record("wrongsize", (50, 40), ["a cat"])), spec) is None
    assert maker.region(raw(record("noregion", (48, 40), ["a cat"])), spec) is None
    ok = raw(record("ok", (48, 40), ["a cat"], [GOOD_REGION]))
    assert maker.itc(ok, spec) is not None and maker.region(ok, spec) is not None
    monkeypatch.setattr(maker.region_transform, "apply", lambda *a, **k: 1 / 0)
    assert maker.region(ok, spec) is None
    assert counter.drain() == {"no_caption": 1, "size_mismatch": 1, "no_region_text": 1, "sample_error": 1}
