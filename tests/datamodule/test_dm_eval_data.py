"""Zero-shot evaluation data: retrieval and grounding sets from held-out shards (deterministic, eval transforms)."""

from __future__ import annotations

import io

import torch
from PIL import Image

from data_prep.shards import read_samples
from xvlm_lit.data.decode import stable_id
from xvlm_lit.data.eval_data import load_grounding_eval, load_retrieval_eval
from xvlm_lit.data.text import clean_caption
from xvlm_lit.data.transforms import ImageTextTransform

from .conftest import SIZE

R = 64


def _val_samples(shapes_dir) -> list[dict]:
    return [s for p in sorted((shapes_dir / "val").glob("*.tar")) for s in read_samples(p)]


def test_retrieval_eval_has_one_first_caption_per_image(shapes_dir, tokenizer):
    samples = _val_samples(shapes_dir)
    ev = load_retrieval_eval(str(shapes_dir / "val"), R, tokenizer, max_tokens=30, limit=25)
    assert ev.images.shape == (25, 3, R, R) and ev.text_ids.shape == ev.text_mask.shape == (25, 30)
    assert torch.equal(ev.text_to_image, torch.arange(25)) and ev.skipped == {}
    assert ev.image_ids == [s["json"]["image_id"] for s in samples[:25]]
    assert ev.captions == [clean_caption(s["json"]["captions"][0], 30) for s in samples[:25]]
    assert bool((ev.text_ids[:, 0] == tokenizer.cls_token_id).all())
    assert not bool((ev.text_ids == tokenizer.sep_token_id).any())
    # eval transform: plain resize, identical on every call
    expect, _, _ = ImageTextTransform(R, train=False)(Image.open(io.BytesIO(samples[3]["jpg"])), [""])
    assert torch.equal(ev.images[3], expect)
    again = load_retrieval_eval(str(shapes_dir / "val"), R, tokenizer, max_tokens=30, limit=25)
    assert torch.equal(again.images, ev.images) and torch.equal(again.text_ids, ev.text_ids)
    whole = load_retrieval_eval(str(shapes_dir / "val"), R, tokenizer, max_tokens=30)
    assert len(whole.captions) == len(samples) == len(set(stable_id(i) for i in whole.image_ids))


def test_grounding_eval_boxes_are_the_scaled_region_boxes(shapes_dir, tokenizer):
    samples = _val_samples(shapes_dir)[:10]
    ev = load_grounding_eval(str(shapes_dir / "val"), R, tokenizer, max_tokens=30, limit=10)
    expect_texts, expect_boxes, expect_index = [], [], []
    for i, s in enumerate(samples):
        for region in s["json"]["regions"]:
            for caption in region["captions"]:
                expect_texts.append(clean_caption(caption, 30))
                x, y, w, h = (v * R / SIZE for v in region["bbox"])
                expect_boxes.append([x, y, x + w, y + h])
                expect_index.append(i)
    t = len(expect_texts)
    assert ev.images.shape == (10, 3, R, R) and ev.text_ids.shape == (t, 30)
    assert ev.texts == expect_texts and ev.image_index.tolist() == expect_index
    assert torch.allclose(ev.boxes_xyxy, torch.tensor(expect_boxes), atol=1e-3)
    xyxy = ev.boxes_xyxy / R
    cxcywh = torch.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                          xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], 1)
    assert torch.allclose(ev.boxes_cxcywh, cxcywh, atol=1e-5)
    as_dict = ev.to_dict()
    assert as_dict["target_cxcywh"] is ev.boxes_cxcywh and as_dict["image_index"] is ev.image_index
    with_objects = load_grounding_eval(str(shapes_dir / "val"), R, tokenizer, limit=10, include_objects=True)
    assert len(with_objects.texts) == t + sum(len(s["json"]["objects"]) for s in samples)
