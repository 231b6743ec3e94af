"""The X-VLM network: geometry, adapters, SDPA attention and local BERT weights."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import BertModel

from xvlm_lit.build import build_model
from xvlm_lit.models.attention import MultiHeadAttention
from xvlm_lit.models.pretrained_text import resolve_bert_dir
from xvlm_lit.models.vision import VisionEncoder
from xvlm_lit.testing import micro_xvlm

from ..conftest import compose_model


def test_base_model_has_reference_parameter_count():
    model = build_model(compose_model("xvlm_base"))
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 216e6) / 216e6 < 0.03
    assert n == 215_637_241  # the reference base model, exactly
    assert model.grid_size == 7 and model.vision_encoder.width == 1024
    cross = model.fusion_encoder.layer[0].crossattention.self
    assert cross.key.weight.shape == (768, 1024) and cross.value.weight.shape == (768, 1024)
    assert len(model.text_encoder.bert.encoder.layer) == 6 and len(model.fusion_encoder.layer) == 6


def test_mlm_decoder_tied_to_word_embeddings():
    model = micro_xvlm()
    assert model.mlm_head.cls.predictions.decoder.weight is model.text_encoder.word_embeddings.weight


def test_swin_cls_is_mean_of_final_patches_and_vit_keeps_its_cls():
    swin = VisionEncoder("swin_tiny_patch4_window7_224", 64, embed_dim=16, depths=(1, 1), num_heads=(1, 2),
                         window_size=4).eval()
    x = torch.randn(2, 3, 64, 64)
    tokens = swin(x)
    assert swin.grid_size == 8 and tokens.shape == (2, 65, 32)
    feats = swin.backbone.forward_features(x).flatten(1, 2)
    assert torch.allclose(tokens[:, 0], feats.mean(1), atol=1e-6)
    assert torch.equal(tokens[:, 1:], feats)
    vit = VisionEncoder("vit_tiny_patch16_224", 64, patch_size=16, embed_dim=32, depth=1, num_heads=2).eval()
    out, ref = vit(x), vit.backbone.forward_features(x)
    assert vit.grid_size == 4 and out.shape == (2, 17, 32) and torch.equal(out, ref)


def test_any_image_size_the_backbone_accepts():
    model = micro_xvlm(image_size=64)
    assert model.grid_size == 8
    assert model.encode_image(torch.randn(1, 3, 64, 64)).shape == (1, 65, 32)


def test_sdpa_attention_matches_manual_softmax_attention():
    torch.manual_seed(0)
    att = MultiHeadAttention(8, 2, kv_dim=6, dropout=0.0)
    h, ctx = torch.randn(3, 5, 8), torch.randn(3, 4, 6)
    key_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    out = att(h, ctx, key_mask)

    def heads(x):
        return x.view(3, -1, 2, 4).transpose(1, 2)

    q, k, v = heads(att.query(h)), heads(att.key(ctx)), heads(att.value(ctx))
    scores = q @ k.transpose(-1, -2) / math.sqrt(4) + (1 - key_mask[:, None, None, :].float()) * -1e9
    ref = (F.softmax(scores, -1) @ v).transpose(1, 2).reshape(3, 5, 8)
    assert torch.allclose(out, ref, atol=1e-5)


def test_region_mask_hides_out_of_box_patches_from_fusion():
    model = micro_xvlm().eval()
    img = model.encode_image(torch.randn(1, 3, 32, 32))
    ids, mask = torch.tensor([[1, 7, 9]]), torch.ones(1, 3, dtype=torch.long)
    text = model.encode_text(ids, mask)
    keep = torch.zeros(1, img.shape[1])
    keep[0, :3] = 1
    a = model.fuse(text, mask, img, keep)
    noisy = img.clone()
    noisy[:, 3:] += 100  # only masked-out patches change
    assert torch.allclose(a, model.fuse(text, mask, noisy, keep), atol=1e-5)
    assert not torch.allclose(a, model.fuse(text, mask, noisy, None), atol=1e-3)


def test_minilm_config_loads_local_bert_into_text_and_fusion_layers():
    model = build_model(compose_model("xvlm_tiny_minilm")).eval()
    ref = BertModel.from_pretrained(resolve_bert_dir("builtin:minilm-l6"), add_pooling_layer=False,
                                    local_files_only=True).eval()
    ids = torch.tensor([[101, 1037, 2417, 4418, 0]])
    mask = (ids > 0).long()
    ref_hidden = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert torch.allclose(model.encode_text(ids, mask), ref_hidden[4], atol=1e-5)  # 4 text layers
    ours = model.fusion_encoder.layer[1].attention.self.query.weight
    assert torch.equal(ours, ref.encoder.layer[5].attention.self.query.weight)
    assert model.fusion_encoder.layer[0].crossattention.self.key.weight.shape == (384, 128)


def test_missing_bert_dir_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="no model.safetensors"):
        build_model(compose_model("xvlm_tiny_minilm", [f"bert_path={tmp_path}"]))


def test_mismatched_vision_width_is_named():
    with pytest.raises(Exception, match="vision_width"):
        build_model(compose_model("xvlm_tiny", ["fusion.vision_width=64"]))
