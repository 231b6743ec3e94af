"""Swin's optional absolute position embedding: what it adds, how it starts, and that checkpoints carry it."""

import pytest
import torch
from timm.layers import build_sincos2d_pos_embed, resample_abs_pos_embed

from xvlm_lit.build import build_model
from xvlm_lit.checkpoints import import_state_dict, reference_keymap, reference_state_dict
from xvlm_lit.models.vision import VisionEncoder

from ..conftest import compose_model

SWIN = dict(model_name="swin_tiny_patch4_window7_224", image_size=64, embed_dim=16, depths=(1, 1),
            num_heads=(1, 2), window_size=4)


def swin(**kw) -> VisionEncoder:
    torch.manual_seed(0)
    return VisionEncoder(**SWIN, **kw).eval()


def test_without_it_a_uniform_image_gives_the_same_token_everywhere():
    """Relative position bias alone cannot tell a patch where it is: on a uniform image every patch token is
    the same. With the embedding each token differs (the position is in the features from the first step)."""
    grey = torch.full((1, 3, 64, 64), 0.3)
    plain = swin()(grey)[0, 1:]
    assert torch.allclose(plain, plain[:1].expand_as(plain), atol=1e-5)
    placed = swin(absolute_pos_embed="sincos")(grey)[0, 1:]
    assert torch.cdist(placed, placed).add(torch.eye(len(placed)) * 1e3).min() > 1e-2


def test_embedding_is_added_after_the_patch_embedding():
    enc = swin(absolute_pos_embed="learned")
    with torch.no_grad():
        enc.absolute_pos_embed.normal_()
    x = torch.randn(2, 3, 64, 64)
    bb = enc.backbone
    patches = bb.patch_embed(x)
    want = bb.norm(bb.layers(patches + enc.absolute_pos_embed.view(1, *patches.shape[1:]))).flatten(1, 2)
    got = enc(x)
    assert torch.allclose(got[:, 1:], want, atol=1e-6)
    assert torch.allclose(got[:, 0], want.mean(1), atol=1e-6)


def test_initialisations_and_gradient():
    sincos = swin(absolute_pos_embed="sincos").absolute_pos_embed
    assert sincos.shape == (1, 16 * 16, 16)
    assert torch.equal(sincos[0], build_sincos2d_pos_embed([16, 16], 16))
    learned = swin(absolute_pos_embed="learned").absolute_pos_embed
    assert learned.shape == sincos.shape and 0.015 < float(learned.detach().std()) < 0.025
    assert swin().absolute_pos_embed is None
    enc = swin(absolute_pos_embed="sincos").train()
    enc(torch.randn(1, 3, 64, 64)).pow(2).mean().backward()
    assert enc.absolute_pos_embed.grad is not None and enc.absolute_pos_embed.grad.abs().sum() > 0


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="absolute_pos_embed='fourier'.*sincos"):
        swin(absolute_pos_embed="fourier")
    with pytest.raises(ValueError, match="needs a Swin backbone.*vit_tiny"):
        VisionEncoder("vit_tiny_patch16_224", 64, patch_size=16, embed_dim=32, depth=1, num_heads=2,
                      absolute_pos_embed="sincos")


def test_reference_layout_round_trip_keeps_it():
    def build(seed: int):
        torch.manual_seed(seed)
        return build_model(compose_model("xvlm_tiny3", ["+vision.absolute_pos_embed=learned"])).eval()

    a, b = build(0), build(1)
    ref = reference_state_dict(a)
    assert ref["vision_encoder.absolute_pos_embed"].shape == a.vision_encoder.absolute_pos_embed.shape
    report = import_state_dict(b, ref, reference_keymap(b))
    assert not report.initialised
    assert torch.equal(a.vision_encoder.absolute_pos_embed, b.vision_encoder.absolute_pos_embed)
    x = torch.randn(1, 3, a.image_size, a.image_size)
    with torch.no_grad():
        assert torch.equal(a.encode_image(x), b.encode_image(x))


def test_demo_model_uses_it():
    model = build_model(compose_model("xvlm_tiny"))
    assert model.vision_encoder.absolute_pos_embed is not None
    grid = model.vision_encoder.backbone.patch_embed.grid_size
    assert torch.equal(model.vision_encoder.absolute_pos_embed[0],
                       build_sincos2d_pos_embed(list(grid), model.vision_encoder.backbone.embed_dim))


def test_a_reference_checkpoint_without_it_leaves_it_at_its_start():
    torch.manual_seed(0)
    plain = build_model(compose_model("xvlm_tiny3")).eval()
    placed = build_model(compose_model("xvlm_tiny3", ["+vision.absolute_pos_embed=sincos"])).eval()
    start = placed.vision_encoder.absolute_pos_embed.detach().clone()
    report = import_state_dict(placed, reference_state_dict(plain), reference_keymap(placed))
    assert list(report.initialised) == ["vision_encoder.absolute_pos_embed"]
    assert torch.equal(placed.vision_encoder.absolute_pos_embed, start)
    assert torch.equal(placed.vision_proj.weight, plain.vision_proj.weight)


def test_it_is_resampled_to_a_larger_image():
    torch.manual_seed(0)
    small = build_model(compose_model("xvlm_tiny3", ["+vision.absolute_pos_embed=sincos"])).eval()
    big = build_model(compose_model("xvlm_tiny3", ["+vision.absolute_pos_embed=sincos",
                                                   "vision.image_size=192"])).eval()
    ref = reference_state_dict(small)
    report = import_state_dict(big, ref, reference_keymap(big))
    assert report.resized["vision_encoder.absolute_pos_embed"] == ((1, 32 * 32, 32), (1, 48 * 48, 32))
    want = resample_abs_pos_embed(ref["vision_encoder.absolute_pos_embed"], new_size=[48, 48], num_prefix_tokens=0)
    assert torch.equal(big.vision_encoder.absolute_pos_embed, want)
    assert not torch.equal(want[0, :1024], ref["vision_encoder.absolute_pos_embed"][0])  # really resampled
    assert torch.isfinite(big.encode_image(torch.randn(1, 3, 192, 192))).all()
