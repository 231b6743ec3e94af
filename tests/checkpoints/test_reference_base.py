"""A state dict written here from SPEC section 8 (the reference's key names and shapes for the base model, random
values) imports into our base model with zero unmatched keys, drives its outputs, and exports back bit-identically."""

import time

import pytest
import torch
import torch.nn.functional as F

from xvlm_lit.build import build_model
from xvlm_lit.checkpoints import init_from, reference_state_dict
from xvlm_lit.checkpoints.io import write_torch

from ..conftest import compose_model
from .test_resize import original_swin_index, original_swin_mask

DIMS, DEPTHS, HEADS, RES = (128, 256, 512, 1024), (2, 2, 18, 2), (4, 8, 16, 32), (56, 28, 14, 7)
H, V, FFN = 768, 30522, 3072

pytestmark = pytest.mark.xdist_group("checkpoints_base")  # one worker builds the base model once


def reference_base_shapes() -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (shape, kind): the reference base checkpoint per SPEC sections 2 and 8 (window 7, 224 px)."""
    s: dict[str, tuple[tuple[int, ...], str]] = {}

    def linear(name, out_dim, in_dim, bias=True):
        s[f"{name}.weight"] = ((out_dim, in_dim), "w")
        if bias:
            s[f"{name}.bias"] = ((out_dim,), "b")

    def norm(name, dim):
        s[f"{name}.weight"] = ((dim,), "ln")
        s[f"{name}.bias"] = ((dim,), "b")

    v = "vision_encoder."
    s[f"{v}patch_embed.proj.weight"] = ((128, 3, 4, 4), "w")
    s[f"{v}patch_embed.proj.bias"] = ((128,), "b")
    norm(f"{v}patch_embed.norm", 128)
    for st, (d, depth, heads, res) in enumerate(zip(DIMS, DEPTHS, HEADS, RES, strict=True)):
        for i in range(depth):
            b = f"{v}layers.{st}.blocks.{i}"
            norm(f"{b}.norm1", d)
            linear(f"{b}.attn.qkv", 3 * d, d)
            linear(f"{b}.attn.proj", d, d)
            s[f"{b}.attn.relative_position_bias_table"] = ((169, heads), "w")
            s[f"{b}.attn.relative_position_index"] = ((49, 49), "index")
            if i % 2 == 1 and res > 7:
                s[f"{b}.attn_mask"] = (((res // 7) ** 2, 49, 49), f"mask{res}")
            norm(f"{b}.norm2", d)
            linear(f"{b}.mlp.fc1", 4 * d, d)
            linear(f"{b}.mlp.fc2", d, 4 * d)
        if st < 3:
            linear(f"{v}layers.{st}.downsample.reduction", 2 * d, 4 * d, bias=False)
            norm(f"{v}layers.{st}.downsample.norm", 4 * d)
    norm(f"{v}norm", 1024)

    e = "text_encoder.bert.embeddings."
    s[f"{e}word_embeddings.weight"] = ((V, H), "w")
    s[f"{e}position_embeddings.weight"] = ((512, H), "w")
    s[f"{e}token_type_embeddings.weight"] = ((2, H), "w")
    norm(f"{e}LayerNorm", H)
    s[f"{e}position_ids"] = ((1, 512), "position_ids")
    for i in range(12):
        lay = f"text_encoder.bert.encoder.layer.{i}"
        for part in ("query", "key", "value"):
            linear(f"{lay}.attention.self.{part}", H, H)
        linear(f"{lay}.attention.output.dense", H, H)
        norm(f"{lay}.attention.output.LayerNorm", H)
        if i >= 6:
            linear(f"{lay}.crossattention.self.query", H, H)
            linear(f"{lay}.crossattention.self.key", H, 1024)
            linear(f"{lay}.crossattention.self.value", H, 1024)
            linear(f"{lay}.crossattention.output.dense", H, H)
            norm(f"{lay}.crossattention.output.LayerNorm", H)
        linear(f"{lay}.intermediate.dense", FFN, H)
        linear(f"{lay}.output.dense", H, FFN)
        norm(f"{lay}.output.LayerNorm", H)
    p = "text_encoder.cls.predictions."
    s[f"{p}bias"] = ((V,), "b")
    linear(f"{p}transform.dense", H, H)
    norm(f"{p}transform.LayerNorm", H)
    s[f"{p}decoder.weight"] = ((V, H), "tied:text_encoder.bert.embeddings.word_embeddings.weight")
    s[f"{p}decoder.bias"] = ((V,), f"tied:{p}bias")
    linear("vision_proj", 256, 1024)
    linear("text_proj", 256, H)
    s["temp"] = ((), "temp")
    for head, out in (("itm_head", 2), ("bbox_head", 4)):
        linear(f"{head}.0", 2 * H, H)
        norm(f"{head}.1", 2 * H)
        linear(f"{head}.3", out, 2 * H)
    return s


def random_reference_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, (shape, kind) in reference_base_shapes().items():
        if kind.startswith("tied:"):
            sd[name] = sd[kind[5:]]  # the reference saves tied tensors under both names
        elif kind == "w":
            sd[name] = torch.randn(shape, generator=g) * 0.02
        elif kind == "b":
            sd[name] = torch.randn(shape, generator=g) * 0.02
        elif kind == "ln":
            sd[name] = 1 + torch.randn(shape, generator=g) * 0.1
        elif kind == "temp":
            sd[name] = torch.tensor(0.05 + 0.01 * torch.rand((), generator=g).item())
        elif kind == "index":
            sd[name] = original_swin_index(7)
        elif kind.startswith("mask"):
            sd[name] = original_swin_mask(int(kind[4:]), 7)
        elif kind == "position_ids":
            sd[name] = torch.arange(512).unsqueeze(0)
        else:
            raise AssertionError(kind)
    return sd


@pytest.fixture(scope="module")
def reference():
    sd = random_reference_state_dict()
    assert len(sd) == 644  # SPEC section 2: a state dict of 644 entries
    return sd


@pytest.fixture(scope="module")
def reference_file(reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "4m_base_model_state_step_199999.th"
    write_torch({"model": reference, "config": {"image_res": 224, "use_swin": True}}, path)
    return path


@pytest.fixture(scope="module")
def imported(reference_file):
    start = time.perf_counter()
    model = build_model(compose_model("xvlm_base")).eval()
    report = init_from(model, reference_file)
    report.seconds = time.perf_counter() - start
    return model, report


def test_base_reference_imports_with_zero_unmatched_keys(reference, imported):
    model, report = imported
    assert report.keymap == "reference"
    assert not report.initialised and not report.resized
    buffers = {k for k in reference if k.endswith(("relative_position_index", "attn_mask", "position_ids"))}
    assert len(buffers) == 24 + 11 + 1 and set(report.unused) == buffers
    assert set(report.mapped.values()) | set(report.unused) == set(reference)
    assert sum(p.numel() for p in model.parameters()) == 215_637_241
    state = model.state_dict()
    for ours, ref in report.mapped.items():
        assert torch.equal(state[ours], reference[ref]), ours
    assert torch.equal(model.vision_encoder.backbone.layers[1].downsample.reduction.weight,
                       reference["vision_encoder.layers.0.downsample.reduction.weight"])
    assert torch.equal(model.fusion_encoder.layer[5].crossattention.self.value.weight,
                       reference["text_encoder.bert.encoder.layer.11.crossattention.self.value.weight"])
    assert model.mlm_head.cls.predictions.decoder.weight is model.text_encoder.bert.embeddings.word_embeddings.weight
    assert model.mlm_head.cls.predictions.decoder.bias is model.mlm_head.cls.predictions.bias


def test_base_outputs_are_computed_from_the_reference_values(reference, imported):
    model, _ = imported
    r = reference
    g = torch.Generator().manual_seed(1)
    images = torch.randn(1, 3, 224, 224, generator=g)
    with torch.no_grad():
        # Swin's first op, by hand from the reference tensors
        patches = F.conv2d(images, r["vision_encoder.patch_embed.proj.weight"],
                           r["vision_encoder.patch_embed.proj.bias"], stride=4).permute(0, 2, 3, 1)
        patches = F.layer_norm(patches, (128,), r["vision_encoder.patch_embed.norm.weight"],
                               r["vision_encoder.patch_embed.norm.bias"])
        assert torch.allclose(model.vision_encoder.backbone.patch_embed(images), patches, atol=1e-5)

        tokens = model.encode_image(images)
        assert tokens.shape == (1, 50, 1024) and torch.isfinite(tokens).all()
        expect = F.normalize(tokens[:, 0] @ r["vision_proj.weight"].T + r["vision_proj.bias"], dim=-1)
        assert torch.allclose(model.image_feat(tokens), expect, atol=1e-6)

        fused = torch.randn(2, 5, H, generator=g)
        hid = F.gelu(F.layer_norm(fused[:, 0] @ r["bbox_head.0.weight"].T + r["bbox_head.0.bias"], (2 * H,),
                                  r["bbox_head.1.weight"], r["bbox_head.1.bias"]))
        box = torch.sigmoid(hid @ r["bbox_head.3.weight"].T + r["bbox_head.3.bias"])
        assert torch.allclose(model.predict_box(fused), box, atol=1e-6)

        p = "text_encoder.cls.predictions."
        pos = torch.tensor([[1, 3], [2, 4]])
        picked = torch.gather(fused, 1, pos[..., None].expand(-1, -1, H))
        t = F.gelu(picked @ r[f"{p}transform.dense.weight"].T + r[f"{p}transform.dense.bias"])
        t = F.layer_norm(t, (H,), r[f"{p}transform.LayerNorm.weight"], r[f"{p}transform.LayerNorm.bias"], 1e-12)
        logits = t @ r[f"{p}decoder.weight"].T + r[f"{p}bias"]
        assert torch.allclose(model.mlm_logits(fused, pos), logits, atol=1e-4)
        assert model.temp.item() == r["temp"].item()


def test_base_exports_back_to_the_reference_file_bit_identically(reference, imported):
    model, report = imported
    assert report.seconds < 30
    out = reference_state_dict(model)
    assert set(out) == set(reference) and len(out) == 644
    for k, v in reference.items():
        assert out[k].shape == v.shape and out[k].dtype == v.dtype, k
        assert torch.equal(out[k], v), k  # weights and the regenerated buffers alike
    assert out["text_encoder.cls.predictions.decoder.weight"].data_ptr() == \
        out["text_encoder.bert.embeddings.word_embeddings.weight"].data_ptr()


@pytest.mark.parametrize(("size", "window"), [(384, 12), (480, 15)])
def test_base_reference_runs_at_384_and_480(reference_file, size, window):
    model = build_model(compose_model("xvlm_base", [f"vision.image_size={size}",
                                                    f"vision.window_size={window}"])).eval()
    report = init_from(model, reference_file)
    rows = (2 * window - 1) ** 2
    assert len(report.resized) == 24
    assert all(new == (rows, old[1]) and old[0] == 169 for old, new in report.resized.values())
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1000, 2000, (1, 8), generator=g)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        img = model.encode_image(torch.randn(1, 3, size, size, generator=g))
        assert img.shape == (1, 1 + (size // 32) ** 2, 1024)
        fused = model.fuse(model.encode_text(ids, mask), mask, img)
        for out in (img, model.image_feat(img), model.itm_logits(fused), model.predict_box(fused)):
            assert torch.isfinite(out).all()
    exported = reference_state_dict(model)
    assert exported["vision_encoder.layers.0.blocks.0.attn.relative_position_bias_table"].shape == (rows, 4)
    assert torch.equal(exported["vision_encoder.layers.2.blocks.1.attn_mask"],
                       original_swin_mask(size // 16, window))
