"""``xvlm_lit.load``: every checkpoint kind, image inputs, galleries, caption/answer heads, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import xvlm_lit
from xvlm_lit.checkpoints import CheckpointMismatchError, save_reference, save_safetensors
from xvlm_lit.inference import ImageGallery, ImageReadError, InferenceError, MissingHeadError

from .conftest import TINY, save_run

TEXTS = ["the red rectangle", "a blue box on the left"]


@pytest.fixture(scope="module")
def predictor(tiny_run):
    return xvlm_lit.load(tiny_run["ckpt"], device="cpu")


def _images(tiny_data):
    return sorted(tiny_data["images"].glob("*.png"))


def test_lightning_run_brings_its_config(predictor):
    assert predictor.config.source.endswith(".hydra/config.yaml")
    assert (predictor.pre.image_size, predictor.pre.max_tokens, predictor.pre.max_words) == (64, 30, 30)
    assert predictor.heads.itc and predictor.heads.itm and predictor.heads.box
    assert not predictor.heads.caption and not predictor.heads.answer
    assert not predictor.model.training


@pytest.mark.parametrize("kind", ["safetensors", "reference"])
def test_exports_load_to_the_same_predictions(tiny_run, tiny_data, predictor, tmp_path, kind):
    path = tmp_path / ("w.safetensors" if kind == "safetensors" else "w.th")
    (save_safetensors if kind == "safetensors" else save_reference)(tiny_run["model"], path)
    other = xvlm_lit.load(path, device="cpu", model="xvlm_tiny", overrides=TINY)
    assert other.config.source == "conf/model/xvlm_tiny"
    image = _images(tiny_data)[1]
    want, got = predictor.ground(image, TEXTS), other.ground(image, TEXTS)
    # the exported file has no run config: the fine-tuning defaults (40 tokens) instead of the run's 30 do not
    # change a short text
    torch.testing.assert_close(torch.tensor([b.xyxy for b in got]), torch.tensor([b.xyxy for b in want]))


def test_wrong_architecture_is_a_mismatch(tiny_run, tmp_path):
    path = save_safetensors(tiny_run["model"], tmp_path / "w.safetensors")
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        xvlm_lit.load(path, device="cpu", model="xvlm_tiny")  # the un-shrunk tiny model


def test_image_inputs_agree(predictor, tiny_data):
    path = _images(tiny_data)[0]
    pil = Image.open(path).convert("RGB")
    uint8 = torch.from_numpy(np.array(pil)).permute(2, 0, 1).contiguous()
    inputs = [path, str(path), pil, uint8, uint8.float() / 255, uint8[None]]
    itc = [predictor.score(x, TEXTS).itc for x in inputs]
    for value in itc[1:]:
        torch.testing.assert_close(value, itc[0])
    assert itc[0].shape == (1, 2)


def test_paired_is_the_diagonal(predictor, tiny_data):
    images = _images(tiny_data)[:2]
    full, paired = predictor.score(images, TEXTS), predictor.score(images, TEXTS, paired=True)
    torch.testing.assert_close(paired.itc, full.itc.diagonal())
    torch.testing.assert_close(paired.itm, full.itm.diagonal())
    assert ((full.itm > 0) & (full.itm < 1)).all() and (full.itc.abs() <= 1 + 1e-6).all()


def test_retrieve_both_directions_and_cache(predictor, tiny_data):
    images = [str(p) for p in _images(tiny_data)]
    scores = predictor.score(images, TEXTS)
    top = predictor.retrieve(TEXTS[0], images, k=3, rerank=0)
    assert [m.index for m in top] == scores.itc[:, 0].argsort(descending=True)[:3].tolist()
    assert all(m.item == images[m.index] and m.itm is None for m in top)
    reranked = predictor.retrieve(TEXTS[0], images, k=4, rerank=4)
    assert [m.index for m in reranked] == scores.itm_logit[:, 0].argsort(descending=True).tolist()
    assert len(predictor._galleries) == 1  # the gallery was encoded once for both calls
    i2t = predictor.retrieve([Path(images[0])], TEXTS, k=2, rerank=0)
    assert [m.item for m in i2t[0]] == [TEXTS[i] for i in scores.itc[0].argsort(descending=True).tolist()]
    g = predictor.index_images(images)
    assert isinstance(g, ImageGallery) and predictor.retrieve(TEXTS[0], g, k=3, rerank=0) == top


def test_errors(predictor, tiny_data, tmp_path):
    with pytest.raises(ImageReadError, match="no such image file"):
        predictor.ground(tmp_path / "missing.jpg", "x")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="cannot read image .*bad.jpg"):
        predictor.score(bad, "x")
    with pytest.raises(ImageReadError, match=r"\[0, 1\]"):
        predictor.score(torch.randn(3, 8, 8), "x")
    with pytest.raises(MissingHeadError, match="no caption decoder.*experiment=caption_coco"):
        predictor.caption(_images(tiny_data)[0])
    with pytest.raises(MissingHeadError, match="no answer decoder.*experiment=vqa"):
        predictor.answer(_images(tiny_data)[0], "what colour?")
    with pytest.raises(InferenceError, match="empty after cleaning"):
        predictor.score(_images(tiny_data)[0], "?!")
    with pytest.raises(InferenceError, match="3 images and 2 texts"):
        predictor.ground(_images(tiny_data)[:3], TEXTS)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        xvlm_lit.load(tmp_path / "none.ckpt")


def test_caption_run(tiny_run, tiny_data, tmp_path):
    """A run whose task is captioning can caption (with its decoding settings); its other heads stay usable."""
    from xvlm_lit.tasks.caption import generate_captions

    task = {"_target_": "xvlm_lit.tasks.caption.CaptionModule", "prompt": "a picture of ", "num_beams": 2,
            "max_length": 9, "min_length": 5}
    ckpt = save_run(tmp_path / "cap", tiny_run["node"], tiny_run["model"], tiny_run["data"], task, ("caption",))
    p = xvlm_lit.load(ckpt, device="cpu")
    images = _images(tiny_data)[:2]
    captions = p.caption(images)
    pixels = p.pre.images([Image.open(i).convert("RGB") for i in images])
    assert captions == generate_captions(tiny_run["model"], pixels, p.pre.tokenizer, "a picture of ", 2, 9, 5)
    assert isinstance(p.caption(images[0], num_beams=1), str)
    with pytest.raises(InferenceError, match="unknown caption settings"):
        p.caption(images[0], beams=3)


def test_vqa_run(tiny_data, tmp_path):
    """A VQA run answers from its answer list; it has no ITC/ITM/box heads."""
    from xvlm_lit.build import build_model

    from ..conftest import compose_model

    torch.manual_seed(1)
    node = compose_model("vqa_tiny", TINY)
    model = build_model(node, load_weights=False)
    answers = ["red", "blue", "green", "two"]
    (tmp_path / "answer_list.json").write_text(json.dumps(answers))
    data = {"root": str(tmp_path), "max_tokens": 40, "max_words": 30, "eval_max_tokens": 64,
            "max_answer_tokens": 16, "answer_list": None}
    task = {"_target_": "xvlm_lit.tasks.vqa.VQAModule", "inference": "rank", "k_test": 3}
    ckpt = save_run(tmp_path / "vqa", node, model, data, task, ("vqa",))
    p = xvlm_lit.load(ckpt, device="cpu")
    assert p.heads.answer and not p.heads.itc
    images = _images(tiny_data)[:2]
    got = p.answer(images, "what colour is the shape?")
    assert len(got) == 2 and set(got) <= set(answers)
    assert p.answer(images[0], "what colour is the shape?", candidates=answers) == got[0]
    assert p.answer(images[0], "what colour?", candidates=["yes"]) == "yes"
    with pytest.raises(MissingHeadError, match="contrastive"):
        p.score(images[0], "red")


def test_reference_captioning_file(tiny_run, tiny_data, tmp_path):
    """A reference captioning ``.th`` (its BERT under ``text_decoder.``, no ITC/ITM/box heads) loads through the
    caption key map: it captions as the original weights do, and scoring names the missing head."""
    from xvlm_lit.checkpoints import reference_state_dict
    from xvlm_lit.tasks.caption import generate_captions

    heads = ("vision_proj.", "text_proj.", "itm_head.", "bbox_head.", "temp")
    ref = {("text_decoder." + k.removeprefix("text_encoder.") if k.startswith("text_encoder.") else k): v
           for k, v in reference_state_dict(tiny_run["model"]).items() if not k.startswith(heads)}
    path = tmp_path / "caption.th"
    torch.save({"model": ref}, path)
    p = xvlm_lit.load(path, device="cpu", model="xvlm_tiny", overrides=TINY)
    assert p.heads.caption and not (p.heads.itc or p.heads.itm or p.heads.box)
    image = _images(tiny_data)[2]
    pixels = p.pre.images([Image.open(image).convert("RGB")])
    assert p.caption(image) == generate_captions(tiny_run["model"], pixels, p.pre.tokenizer)[0]
    with pytest.raises(MissingHeadError, match="no box head.*experiment=grounding"):
        p.ground(image, "red")
