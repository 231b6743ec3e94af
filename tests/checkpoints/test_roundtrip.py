"""ours -> reference layout -> ours is bit-identical, for every geometry the config allows (tiny Swin, 2+2 BERT,
other splits, ViT), through memory, torch files, safetensors and Lightning checkpoints."""

import pytest
import torch

from xvlm_lit.build import build_model
from xvlm_lit.checkpoints import (
    import_state_dict,
    init_from,
    load_reference_checkpoint,
    reference_keymap,
    reference_state_dict,
    save_reference,
    save_safetensors,
)
from xvlm_lit.checkpoints.io import read_checkpoint
from xvlm_lit.models.fusion import FusionEncoder
from xvlm_lit.models.text import TextEncoder
from xvlm_lit.models.xvlm import XVLM
from xvlm_lit.testing import MICRO_BERT, micro_xvlm

from ..conftest import compose_model


def tiny(seed: int, **overrides) -> XVLM:
    torch.manual_seed(seed)
    over = ["bert_path=null"] + [f"{k}={v}" for k, v in overrides.items()]
    model = build_model(compose_model("xvlm_tiny3", over)).eval()
    with torch.no_grad():  # move every tensor off its init so equality cannot come from equal inits
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def outputs(model: XVLM) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    r = model.image_size
    images = torch.randn(2, 3, r, r, generator=g)
    ids = torch.randint(5, model.text_encoder.spec.vocab_size, (2, 6), generator=g)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        img = model.encode_image(images)
        txt = model.encode_text(ids, mask)
        fused = model.fuse(txt, mask, img)
        return [model.image_feat(img), model.text_feat(txt), model.itm_logits(fused), model.predict_box(fused),
                model.mlm_logits(fused, torch.tensor([[1, 2], [3, 4]]))]


def assert_same(a: XVLM, b: XVLM) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    for x, y in zip(outputs(a), outputs(b), strict=True):
        assert torch.equal(x, y)
    assert b.mlm_head.cls.predictions.decoder.weight is b.text_encoder.bert.embeddings.word_embeddings.weight
    assert b.mlm_head.cls.predictions.decoder.bias is b.mlm_head.cls.predictions.bias


def test_tiny_round_trip_in_memory_is_bit_identical():
    a, b = tiny(0), tiny(1)
    assert not torch.equal(a.vision_proj.weight, b.vision_proj.weight)
    ref = reference_state_dict(a)
    # the reference names: Swin merging at the end of stages 0..S-2, fusion layers after the text layers
    assert "vision_encoder.layers.0.downsample.reduction.weight" in ref
    assert "vision_encoder.layers.2.downsample.reduction.weight" not in ref
    assert "text_encoder.bert.encoder.layer.3.crossattention.self.key.weight" in ref
    assert "text_encoder.bert.encoder.layer.1.crossattention.self.key.weight" not in ref
    assert ref["text_encoder.bert.encoder.layer.2.crossattention.self.key.weight"].shape == (384, 128)
    assert "text_encoder.cls.predictions.decoder.weight" in ref and "temp" in ref
    report = import_state_dict(b, ref, reference_keymap(b))
    assert_same(a, b)
    assert not report.initialised and not report.resized
    assert set(report.unused) == {k for k in ref if k.endswith(("relative_position_index", "attn_mask",
                                                                "position_ids"))}
    assert report.tied == {
        "mlm_head.cls.predictions.decoder.weight": "text_encoder.bert.embeddings.word_embeddings.weight",
        "mlm_head.cls.predictions.decoder.bias": "mlm_head.cls.predictions.bias",
    }
    # and back: the re-export equals the first export
    again = reference_state_dict(b)
    assert again.keys() == ref.keys() and all(torch.equal(again[k], ref[k]) for k in ref)


def test_tiny_round_trip_through_files(tmp_path):
    a = tiny(0)
    save_reference(a, tmp_path / "ref.th", extra={"config": {"image_res": 128}})
    raw = read_checkpoint(tmp_path / "ref.th")
    assert set(raw) == {"model", "config"}
    b = tiny(1)
    report = load_reference_checkpoint(b, tmp_path / "ref.th")
    assert report.keymap == "reference"
    assert_same(a, b)

    save_safetensors(b, tmp_path / "ours.safetensors")
    c = tiny(2)
    report = init_from(c, tmp_path / "ours.safetensors")
    assert report.keymap == "ours" and "mlm_head.cls.predictions.decoder.weight" in report.tied
    assert_same(a, c)


def test_lightning_checkpoint_and_plain_state_dicts(tmp_path):
    a = tiny(0)
    ckpt = {"state_dict": {f"model.{k}": v for k, v in a.state_dict().items()}, "epoch": 3, "global_step": 10,
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4}]}], "hyper_parameters": {"lr": 1e-4}}
    torch.save(ckpt, tmp_path / "last.ckpt")
    b = tiny(1)
    assert init_from(b, tmp_path / "last.ckpt").keymap == "ours"
    assert_same(a, b)

    torch.save(reference_state_dict(a), tmp_path / "bare_ref.pth")  # reference layout without {"model": ...}
    c = tiny(2)
    assert init_from(c, tmp_path / "bare_ref.pth").keymap == "reference"
    assert_same(a, c)

    torch.save({f"module.{k}": v for k, v in a.state_dict().items()}, tmp_path / "ddp.pth")
    d = tiny(3)
    assert init_from(d, tmp_path / "ddp.pth").keymap == "ours"
    assert_same(a, d)


@pytest.mark.parametrize(("n_text", "n_fusion"), [(1, 1), (3, 1), (1, 3)])
def test_any_text_fusion_split_round_trips(n_text, n_fusion):
    def build(seed):
        torch.manual_seed(seed)
        enc = micro_xvlm(seed).vision_encoder
        return XVLM(enc, TextEncoder(MICRO_BERT, n_text), FusionEncoder(MICRO_BERT, n_fusion, enc.width),
                    embed_dim=16).eval()

    a, b = build(0), build(1)
    ref = reference_state_dict(a)
    layers = {int(k.split(".")[4]) for k in ref if k.startswith("text_encoder.bert.encoder.layer.")}
    cross = {int(k.split(".")[4]) for k in ref if ".crossattention." in k}
    assert layers == set(range(n_text + n_fusion)) and cross == set(range(n_text, n_text + n_fusion))
    import_state_dict(b, ref, reference_keymap(b))
    assert_same(a, b)


def test_vit_backbone_round_trips_and_resizes_pos_embed():
    a, b = micro_xvlm(0, vision="vit").eval(), micro_xvlm(1, vision="vit").eval()
    ref = reference_state_dict(a)
    assert "vision_encoder.pos_embed" in ref and "vision_encoder.cls_token" in ref
    import_state_dict(b, ref, reference_keymap(b))
    assert_same(a, b)

    big = micro_xvlm(2, image_size=48, vision="vit").eval()  # 6x6 grid instead of 4x4
    report = import_state_dict(big, ref, reference_keymap(big))
    assert report.resized == {"vision_encoder.backbone.pos_embed": ((1, 17, 32), (1, 37, 32))}
    pos = big.vision_encoder.backbone.pos_embed
    assert torch.equal(pos[:, 0], ref["vision_encoder.pos_embed"][:, 0])  # CLS kept
    assert torch.isfinite(big.encode_image(torch.randn(1, 3, 48, 48))).all()


def test_tiny_swin_at_a_larger_window_imports_with_resized_tables():
    a = tiny(0)
    big = tiny(1, **{"vision.image_size": 192, "vision.window_size": 6})
    report = init_from_state(big, reference_state_dict(a))
    tables = [k for k in report.resized if k.endswith("relative_position_bias_table")]
    assert len(tables) == 6 and report.resized[tables[0]] == ((49, 2), (121, 2))
    assert set(report.resized) == set(tables)
    out = outputs(big)
    assert all(torch.isfinite(o).all() for o in out)
    # the exported reference file of the 192-px model carries its own (window-6) buffers
    ref_big = reference_state_dict(big)
    assert ref_big["vision_encoder.layers.0.blocks.0.attn.relative_position_index"].shape == (36, 36)
    assert ref_big["vision_encoder.layers.0.blocks.1.attn_mask"].shape == (64, 36, 36)


def init_from_state(model, state):
    return import_state_dict(model, state, reference_keymap(model))
