"""Captioning checkpoints (SPEC section 8: ``text_encoder.`` -> ``text_decoder.``): the reference's captioning layout
(``vision_encoder.*`` + ``text_decoder.{bert,cls}.*``, no contrastive/matching/box heads) imports with every key
accounted for; pre-trained and our own checkpoints go through the generic maps."""

import torch

from xvlm_lit.checkpoints import reference_state_dict
from xvlm_lit.checkpoints.caption_keymap import caption_keymap, init_caption, reference_caption_keymap
from xvlm_lit.checkpoints.importer import import_state_dict
from xvlm_lit.checkpoints.sources import Source
from xvlm_lit.testing import micro_xvlm

HEADS = ("vision_proj.", "text_proj.", "itm_head.", "bbox_head.", "temp")


def reference_caption_layout(model) -> dict:
    """What the reference's Captioning.py saves: the whole BERT (MLM head included) renamed to text_decoder."""
    out = {}
    for key, value in reference_state_dict(model).items():
        if key.startswith("text_encoder."):
            out["text_decoder." + key.removeprefix("text_encoder.")] = value
        elif key.startswith("vision_encoder."):
            out[key] = value
    return out


def test_reference_captioning_checkpoint_imports_every_key(tmp_path):
    source = micro_xvlm(seed=4)
    sd = reference_caption_layout(source)
    assert "text_decoder.cls.predictions.decoder.weight" in sd and not any(k.startswith(HEADS) for k in sd)
    torch.save({"model": sd, "config": {}}, tmp_path / "coco_capt_ft.th")
    model = micro_xvlm(seed=8)
    report = init_caption(model, tmp_path / "coco_capt_ft.th")
    assert set(report.initialised) == {k for k in model.state_dict() if k.startswith(HEADS)}
    assert all(k.endswith(("relative_position_index", "attn_mask", "position_ids")) for k in report.unused)
    ours, theirs = model.state_dict(), source.state_dict()
    for key in ours:
        if not key.startswith(HEADS):
            assert torch.equal(ours[key], theirs[key]), key
    # the LM head is the MLM head, its decoder still the word embeddings
    assert model.mlm_head.cls.predictions.decoder.weight is model.text_encoder.word_embeddings.weight


def test_keymap_choice_by_layout():
    model = micro_xvlm()
    ref = reference_state_dict(micro_xvlm(seed=1))
    assert caption_keymap(model, Source(ref, "reference", "model", "x")).name == "reference"
    capt = reference_caption_layout(micro_xvlm(seed=1))
    km = caption_keymap(model, Source(capt, "reference", "model", "x"))
    assert km.name == reference_caption_keymap(model).name == "reference_caption"
    import_state_dict(model, capt, km)  # strict
    ours = micro_xvlm(seed=2).state_dict()
    assert caption_keymap(model, Source(ours, "ours", "lightning", "x")).name == "ours"
