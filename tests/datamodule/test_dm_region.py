"""Step batches: VLBatch shapes / dtypes, text format, region batches (no duplicates, padding, boxes vs masks)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from xvlm_lit.data.collate import TextEncoder, collate_region
from xvlm_lit.data.decode import stable_id
from xvlm_lit.data.samples import SampleMaker
from xvlm_lit.data.skips import SkipCounter
from xvlm_lit.data.sources import SourceSpec
from xvlm_lit.data.transforms import box_xywh_to_cxcywh_norm
from xvlm_lit.models.concepts import boxes_to_patch_mask

from .conftest import R

GRID = R // 16


@pytest.fixture(scope="module")
def region_steps(shapes_dir) -> list[dict]:
    """Region-only steps with room for more texts than the images provide (so some slots are padding)."""
    from xvlm_lit.data.datamodule import PretrainDataModule

    dm = PretrainDataModule(
        sources=[{"name": "shapes", "urls": str(shapes_dir / "train"), "streams": ["itc", "region"]}],
        image_size=R, patch_size=16, max_tokens=24, max_masks=4, batch_size=4, region_batch_size=24,
        region_images=4, max_regions=5, region_prob=1.0, num_workers=0, seed=3, epoch_steps=8, shuffle_buffer=8,
        rank=0, world_size=1)
    dm.setup("fit")
    return list(dm.train_dataloader())


def test_itc_batch_matches_the_vlbatch_contract(make_dm, tokenizer):
    step = next(iter(make_dm(region_prob=0.0).train_dataloader()))
    assert set(step) == {"itc", "region", "skipped"} and step["region"] is None
    b = step["itc"]
    assert b.images.shape == (8, 3, R, R) and b.images.dtype == torch.float32
    length = b.text_ids.shape[1]  # padded to the batch's longest text, never beyond max_tokens
    assert length <= 24 and int(b.text_mask.sum(1).max()) == length
    for name in ("text_ids", "text_mask", "masked_ids"):
        assert getattr(b, name).shape == (8, length) and getattr(b, name).dtype == torch.long
    assert b.masked_pos.shape == b.masked_labels.shape == (8, 4)
    assert b.idx.dtype == torch.long and b.valid.dtype == torch.bool and bool(b.valid.all())
    assert b.image_index is None and b.patch_mask is None and b.target_box is None
    # [CLS] wordpieces, no [SEP]; masking only on real non-CLS tokens
    assert bool((b.text_ids[:, 0] == tokenizer.cls_token_id).all())
    assert not bool((b.text_ids == tokenizer.sep_token_id).any())
    real = b.masked_labels != -100
    assert bool(real.any(1).all())
    pos = b.masked_pos[real]
    assert bool((pos >= 1).all()) and bool((b.text_mask.gather(1, b.masked_pos)[real] == 1).all())
    assert torch.equal(b.text_ids.gather(1, b.masked_pos)[real], b.masked_labels[real])
    assert bool(((b.text_ids == 0) == (b.text_mask == 0)).all())


def test_region_batches_have_exact_slots_and_padding_is_invalid(region_steps, tokenizer):
    for step in region_steps:
        b = step["region"]
        n_img, t = b.images.shape[0], b.num_texts
        assert t == 24 and 1 <= n_img <= 4
        assert b.image_index.shape == (t,) and int(b.image_index.max()) < n_img
        assert b.patch_mask.shape == (t, 1 + GRID * GRID) and b.patch_mask.dtype == torch.float32
        assert b.target_box.shape == (t, 4) and b.has_box.dtype == torch.bool and b.valid.dtype == torch.bool
        valid = b.valid
        n_valid = int(valid.sum())
        assert n_valid <= 4 * 5 < t and bool(valid[:n_valid].all()) and not bool(valid[n_valid:].any())
        pad = ~valid
        assert not bool(b.has_box[pad].any()) and bool((b.idx[pad] < 0).all())
        assert len(set(b.idx[pad].tolist())) == int(pad.sum())
        assert bool((b.text_mask[pad].sum(1) == 1).all()) and bool((b.masked_labels[pad] == -100).all())
        # every image keeps at least one text and at most max_regions
        counts = torch.bincount(b.image_index[valid], minlength=n_img)
        assert bool((counts >= 1).all()) and bool((counts <= 5).all())


def test_region_batches_never_hold_duplicate_image_text_pairs(region_steps):
    for step in region_steps:
        b = step["region"]
        pairs = [(int(i), tuple(ids.tolist())) for i, ids, v in zip(b.image_index, b.text_ids, b.valid, strict=True)
                 if v]
        assert len(pairs) == len(set(pairs))


def test_whole_image_caption_comes_first_without_a_box(region_steps):
    for step in region_steps:
        b = step["region"]
        for img in range(b.images.shape[0]):
            rows = torch.nonzero((b.image_index == img) & b.valid).flatten()
            first = int(rows[0])
            assert not bool(b.has_box[first])  # shapes samples all have captions
            assert bool(b.has_box[rows[1:]].all())
            assert torch.equal(b.target_box[first], torch.tensor([0.5, 0.5, 1.0, 1.0]))
            assert bool((b.patch_mask[first] == 1).all())


def test_patch_mask_and_target_agree_with_the_boxes(region_steps):
    for step in region_steps:
        b = step["region"]
        rows = b.valid & b.has_box
        cx, cy, w, h = (b.target_box[rows] * R).unbind(1)
        xywh = torch.stack([cx - w / 2, cy - h / 2, w, h], 1)
        assert bool((b.target_box[rows] >= 0).all()) and bool((b.target_box[rows] <= 1).all())
        # the normalised targets lose a few ulps: compare with the masks of slightly shrunk / grown boxes
        e = 1e-3
        inner = boxes_to_patch_mask(xywh + torch.tensor([e, e, -2 * e, -2 * e]), R, GRID)
        outer = boxes_to_patch_mask(xywh + torch.tensor([-e, -e, 2 * e, 2 * e]), R, GRID)
        assert bool((inner <= b.patch_mask[rows]).all()) and bool((b.patch_mask[rows] <= outer).all())
        assert bool((b.patch_mask[rows, 1:].sum(1) >= 1).all())


def test_collated_boxes_are_the_transformed_boxes(train_samples, tokenizer):
    spec = SourceSpec("s", ["unused.tar"], streams=("itc", "region"))
    maker = SampleMaker(R, 30, train=True, counter=SkipCounter())
    rng = np.random.default_rng(0)
    raws = [{"__key__": s["__key__"], "jpg": s["jpg"], "json": json.dumps(s["json"]).encode()}
            for s in train_samples[:6]]
    items = [maker.region(raw, spec, rng, max_regions=5) for raw in raws]
    batch = collate_region(items, 40, TextEncoder(tokenizer, 24, 4), random.Random(0), R, GRID)
    k = 0
    for img, item in enumerate(items):
        for text in item.texts:
            assert int(batch.image_index[k]) == img and bool(batch.valid[k]) and int(batch.idx[k]) == text.idx
            if text.box is None:
                assert text.idx == stable_id(item.image_id) and not bool(batch.has_box[k])
            else:
                box = torch.tensor([text.box])
                x, y, w, h = text.box
                assert min(x, y) >= -1e-4 and x + w <= R + 1e-4 and y + h <= R + 1e-4 and min(w, h) > 0
                assert torch.allclose(batch.target_box[k], box_xywh_to_cxcywh_norm(box, R)[0])
                assert torch.equal(batch.patch_mask[k], boxes_to_patch_mask(box, R, GRID)[0])
            k += 1
    assert k <= 30 and not bool(batch.valid[k:].any())
