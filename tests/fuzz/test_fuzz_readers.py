"""The fuzz corpus through every reader: each bad input skipped and counted with its reason, 0 crashes, and exactly
the good samples of the same shard / file come through (docs/reliability_fuzz.md holds the measured table)."""

from __future__ import annotations

import io
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from xvlm_lit import testing_fuzz as fz
from xvlm_lit.data.decode import stable_id
from xvlm_lit.data.images import BadImage, load_rgb
from xvlm_lit.data.sources import ReaderCountError

sys.path.insert(0, str(Path(__file__).parent))
import measure  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability_fuzz.md"


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict[str, measure.Measured]:
    return measure.measure_all(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> fz.ShardCorpus:
    return fz.write_shards(tmp_path_factory.mktemp("fuzz_shards"))


@pytest.mark.parametrize("reader", list(measure.READERS))
def test_every_reader_keeps_exactly_the_good_samples_and_counts_each_bad_one(measured, reader):
    m = measured[reader]
    assert m.good == m.expected_good
    assert m.skipped == m.expected_skipped


def test_the_corpus_covers_every_case(corpus):
    """The expectations are not vacuous: every case kind is present and some samples of each shard are good."""
    itc, region = corpus.expected_skips("itc"), corpus.expected_skips("region")
    for reason in ("broken_tar", "corrupt_image", "image_too_large", "bad_json", "wrong_type", "empty_caption",
                   "no_caption"):
        assert itc.get(reason, 0) >= 1, reason
    for reason in ("bbox_malformed", "bbox_empty", "bbox_outside_image", "no_region_text"):
        assert region.get(reason, 0) >= 1, reason
    assert len(corpus.cases) == 19 + 4  # the two shards, as docs/reliability_fuzz.md describes them
    assert len(corpus.good_ids("itc")) == 13 and len(corpus.good_ids("region")) == 12
    assert {"fuzz/longcap", "fuzz/tail2"} <= set(corpus.good_ids("itc"))  # 10,000 characters; last before the cut


def test_decompression_bombs_are_refused_before_decoding():
    png = fz.bad_images()["bomb.png"]
    assert len(png) < 50_000  # 1e8 pixels in a few kB
    with pytest.warns(Image.DecompressionBombWarning), Image.open(io.BytesIO(png)) as img:  # PIL only warns
        assert img.size == (10_000, 10_000) and img.width * img.height > Image.MAX_IMAGE_PIXELS
    for data in (png, fz.bad_images()["bomb_header.png"]):
        with pytest.raises(BadImage) as err:
            load_rgb(data, "bomb")
        assert err.value.reason == "image_too_large" and "MAX_IMAGE_PIXELS" in str(err.value)
    for data in (b"", fz.CORRUPT_JPEG):
        with pytest.raises(BadImage) as err:
            load_rgb(data, "broken")
        assert err.value.reason == "corrupt_image"


def test_long_caption_is_kept_and_cut_to_max_words(corpus):
    from xvlm_lit.data.readers import ordered_reader
    from xvlm_lit.data.samples import SampleMaker
    from xvlm_lit.data.skips import SkipCounter

    spec = measure._spec(corpus.root)
    maker = SampleMaker(32, 30, train=False, counter=SkipCounter())
    item = next(maker.itc(raw, spec) for _, raw in ordered_reader([spec], SkipCounter())
                if raw["__key__"] == "longcap")
    assert item.text == " ".join(["word"] * 30)


def test_train_loader_over_the_corpus_never_crashes_and_counts_every_reason(corpus, tmp_path):
    """The full training DataLoader (mixing, shuffling, two passes and more): only good ids, every reason counted."""
    from xvlm_lit.data.datamodule import PretrainDataModule

    dm = PretrainDataModule(sources=[{"name": "fuzz", "urls": str(corpus.root), "streams": ["itc", "region"]}],
                            image_size=32, patch_size=16, max_tokens=24, max_masks=4, batch_size=8,
                            region_batch_size=8, region_images=3, region_prob=1.0, num_workers=0, seed=3,
                            epoch_steps=8, shuffle_buffer=4)
    dm.setup("fit")
    steps = list(dm.train_dataloader())
    assert len(steps) == 8
    good = {stable_id(i) for i in corpus.good_ids("itc")}
    seen = {int(i) for s in steps for i in s["itc"].idx}
    assert seen == good  # 64 drawn items over 13 good ones: all come through, no bad one
    counted = Counter()
    for s in steps:
        counted.update(s["skipped"])
    per_pass = Counter(corpus.expected_skips("itc")) + Counter(corpus.expected_skips("region"))
    assert set(counted) == set(per_pass)
    assert all(counted[r] >= n for r, n in corpus.expected_skips("itc").items())  # at least one full itc pass


def test_fewer_shards_than_readers_is_a_clear_error_before_training(corpus):
    from xvlm_lit.data.datamodule import PretrainDataModule

    dm = PretrainDataModule(sources=[{"name": "fuzz", "urls": str(corpus.root)}], image_size=32, patch_size=16,
                            num_workers=2, world_size=2, rank=1, epoch_steps=2)
    with pytest.raises(ReaderCountError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert "source 'fuzz' has 2 shard(s) but 2 rank(s) x 2 worker(s) = 4 readers" in msg
    assert "re-shard it into >= 4 shards" in msg and "lower num_workers" in msg and "resampled: true" in msg


def test_report_table_in_docs_is_the_measured_one(measured):
    table = measure.report_table(measured)
    print("\n" + table)
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"<!-- fuzz-table -->\n(.*?)\n<!-- /fuzz-table -->", text, re.S)
    assert found, f"{DOC} has no fuzz-table block"
    assert found.group(1).strip() == table, "regenerate the table: python tests/fuzz/measure.py"
