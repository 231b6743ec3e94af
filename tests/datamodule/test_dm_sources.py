"""Sources: url forms, weighted mixing, shard counts vs readers, img2dataset output read as-is."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from xvlm_lit.data.decode import stable_id
from xvlm_lit.data.sources import make_source, make_sources
from xvlm_lit.data.streams import MixedSource
from xvlm_lit.data.text import clean_caption

from .conftest import jpeg_bytes, write_tar


def test_url_forms_resolve_to_the_same_shards(shapes_dir):
    train = shapes_dir / "train"
    names = sorted(str(p) for p in train.glob("*.tar"))
    as_dir = make_source({"name": "a", "urls": str(train)})
    as_brace = make_source({"name": "b", "urls": str(train / "shapes-{000000..000004}.tar")})
    as_glob = make_source({"name": "c", "urls": str(train / "shapes-*.tar")})
    as_list = make_source({"name": "d", "urls": names[:2] + [str(train / "shapes-{000002..000004}.tar")]})
    assert as_dir.urls == as_brace.urls == as_glob.urls == as_list.urls == names


def test_bad_source_configs_are_clear_errors(shapes_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="source 'x'"):
        make_source({"name": "x", "urls": str(shapes_dir / "train" / "nope-{0..2}.tar")})
    with pytest.raises(ValueError, match="no shards"):
        make_source({"name": "x", "urls": str(tmp_path)})
    with pytest.raises(ValueError, match="cannot feed the region stream"):
        make_source({"name": "x", "urls": str(shapes_dir / "train"), "kind": "img2dataset", "streams": ["region"]})
    with pytest.raises(ValueError, match="unknown keys"):
        make_source({"name": "x", "urls": str(shapes_dir / "train"), "wieght": 2})
    with pytest.raises(ValueError, match="unique"):
        make_sources([{"name": "x", "urls": str(shapes_dir / "train")}] * 2)


def test_weighted_mix_matches_the_weights_over_many_draws():
    def endless(tag):
        while True:
            yield tag

    weights = [0.5, 0.3, 0.2]
    specs = [type("S", (), {"name": n})() for n in "abc"]
    mix = MixedSource(specs, weights, lambda s: endless(s.name), np.random.default_rng(0), counter=None)
    counts = Counter(mix.next(lambda raw, spec: raw) for _ in range(20000))
    for name, w in zip("abc", weights, strict=True):
        assert abs(counts[name] / 20000 - w) < 0.015


def test_failed_samples_are_retried_on_the_same_source_so_the_mix_keeps_its_weights():
    def endless(tag):
        k = 0
        while True:
            k += 1
            yield (tag, k)

    specs = [type("S", (), {"name": n})() for n in "ab"]
    mix = MixedSource(specs, [0.5, 0.5], lambda s: endless(s.name), np.random.default_rng(1), counter=None)
    # source "a" fails 3 samples out of 4: the produced items are still about half "a"
    make = lambda raw, spec: raw[0] if raw[0] == "b" or raw[1] % 4 == 0 else None
    counts = Counter(mix.next(make) for _ in range(4000))
    assert abs(counts["a"] / 4000 - 0.5) < 0.03


def test_two_sources_mix_in_batches_by_weight(make_dm, shapes_dir, train_samples):
    train = shapes_dir / "train"
    sources = [
        {"name": "big", "urls": str(train / "shapes-{000000..000003}.tar"), "weight": 3.0},
        {"name": "small", "urls": str(train / "shapes-000004.tar"), "weight": 1.0},
    ]
    owner = {stable_id(s["json"]["image_id"]): ("small" if i >= 160 else "big") for i, s in enumerate(train_samples)}
    dm = make_dm(sources=sources, epoch_steps=50, region_prob=0.0)
    counts = Counter(owner[int(i)] for b in dm.train_dataloader() for i in b["itc"].idx)
    assert sum(counts.values()) == 400
    assert abs(counts["big"] / 400 - 0.75) < 0.07


def test_fewer_shards_than_ranks_times_workers_is_a_clear_error(make_dm, shapes_dir):
    with pytest.raises(ValueError, match=r"source 'shapes' has 5 shard\(s\) but 3 rank\(s\) x 2 worker\(s\) = 6"):
        make_dm(world_size=3, rank=0, num_workers=2)
    one = [{"name": "one", "urls": str(shapes_dir / "train" / "shapes-000000.tar"), "resampled": True}]
    dm = make_dm(sources=one, world_size=3, rank=2, num_workers=2, epoch_steps=2, region_prob=0.0)  # resampling: fine
    batches = list(dm.train_dataloader())
    assert len(batches) == 2 and all(b["itc"].num_texts == 8 for b in batches)


def _img2dataset_members(n: int) -> tuple[list[tuple[str, bytes]], list[str]]:
    members, captions = [], []
    for k in range(n):
        key = f"{k:09d}"
        caption = f"A Photo of thing number {k}!"
        meta = {"url": f"http://x/{k}.jpg", "key": key, "status": "success", "caption": caption, "width": 48}
        members += [(f"{key}.jpg", jpeg_bytes(colour=(10 * k, 50, 90))), (f"{key}.txt", caption.encode()),
                    (f"{key}.json", json.dumps(meta).encode())]
        captions.append(caption)
    return members, captions


def _decoded(tokenizer, batch) -> set[str]:
    return {tokenizer.decode(row[1:int(m.sum())]) for row, m in zip(batch.text_ids, batch.text_mask, strict=True)}


def test_img2dataset_tar_output_is_read_as_is(make_dm, tmp_path, tokenizer):
    out = tmp_path / "i2d"
    out.mkdir()
    members, captions = _img2dataset_members(6)
    write_tar(out / "00000.tar", members)
    (out / "00000_stats.json").write_text("{}")
    (out / "00000.parquet").write_bytes(b"PAR1")
    src = [{"name": "web", "urls": str(out), "kind": "img2dataset"}]
    dm = make_dm(sources=src, epoch_steps=3, batch_size=4, region_prob=1.0)
    batches = list(dm.train_dataloader())
    assert all(b["region"] is None for b in batches)  # no source feeds the region stream
    texts = set().union(*(_decoded(tokenizer, b["itc"]) for b in batches))
    assert texts <= {clean_caption(c, 30) for c in captions} and len(texts) >= 3
    ids = {int(i) for b in batches for i in b["itc"].idx}
    assert ids <= {stable_id(f"web/{k:09d}") for k in range(6)}
    assert sum(sum(b["skipped"].values()) for b in batches) == 0


def test_img2dataset_unpacked_folder_is_read_as_is(make_dm, tmp_path, tokenizer):
    members, captions = _img2dataset_members(5)
    for name, data in members:
        path = tmp_path / "files" / "00000" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    src = make_source({"name": "web", "urls": str(tmp_path / "files"), "kind": "img2dataset"})
    assert src.folder is not None and len(src.folder) == 5
    dm = make_dm(sources=[{"name": "web", "urls": str(tmp_path / "files"), "kind": "img2dataset"}],
                 epoch_steps=2, batch_size=5, region_prob=0.0)
    batches = list(dm.train_dataloader())
    texts = set().union(*(_decoded(tokenizer, b["itc"]) for b in batches))
    assert texts <= {clean_caption(c, 30) for c in captions}
    assert len(texts) >= 3
