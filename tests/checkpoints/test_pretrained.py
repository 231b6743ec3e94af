"""ImageNet Swin files (original and timm layouts) and BERT directories load through the same strict importer."""

import re

import pytest
import timm
import torch
from transformers import BertConfig, BertForMaskedLM

from xvlm_lit.build import build_model
from xvlm_lit.checkpoints import CheckpointMismatchError, load_bert_dir, load_vision_checkpoint
from xvlm_lit.checkpoints.io import write_safetensors, write_torch
from xvlm_lit.checkpoints.resize import resize_rel_pos_table, swin_reference_buffers
from xvlm_lit.models.vision import VisionEncoder

from ..conftest import compose_model

SWIN = dict(embed_dim=32, depths=(2, 2, 2), num_heads=(2, 4, 8))  # the tiny config's geometry


@pytest.fixture(scope="module")
def imagenet_swin():
    """An ImageNet-style Swin (window 7 at 224 px, 1000 classes) and its state dict in the original layout."""
    torch.manual_seed(0)
    net = timm.create_model("swin_tiny_patch4_window7_224", num_classes=1000, **SWIN).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    timm_sd = {k: v.clone() for k, v in net.state_dict().items()}
    original = {}
    for k, v in timm_sd.items():  # merging at the end of stages 0..1, classifier as `head`
        k = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", k)
        original[k.replace("head.fc.", "head.")] = v
    original.update({re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", k): v
                     for k, v in swin_reference_buffers(net).items()})
    assert "layers.0.downsample.reduction.weight" in original and "head.weight" in original
    assert "layers.0.blocks.1.attn_mask" in original
    return timm_sd, original


def check_loaded(enc: VisionEncoder, timm_sd, window: int):
    sd = enc.backbone.state_dict()
    for k, v in sd.items():
        if k.endswith("relative_position_bias_table"):
            assert torch.equal(v, resize_rel_pos_table(timm_sd[k], window)), k
        else:
            assert torch.equal(v, timm_sd[k]), k


def test_original_layout_imagenet_swin_file_loads_at_another_window(imagenet_swin, tmp_path):
    timm_sd, original = imagenet_swin
    write_torch({"model": original}, tmp_path / "swin_22k.pth")
    enc = VisionEncoder("swin_tiny_patch4_window7_224", 128, window_size=4, **SWIN)
    report = load_vision_checkpoint(enc, tmp_path / "swin_22k.pth")
    check_loaded(enc, timm_sd, 4)
    assert torch.equal(enc.backbone.layers[1].downsample.reduction.weight,
                       original["layers.0.downsample.reduction.weight"])
    assert len(report.resized) == 6 and set(report.resized.values()) == {((169, 2), (49, 2)), ((169, 4), (49, 4)),
                                                                         ((169, 8), (49, 8))}
    assert {k for k in report.unused if k.startswith("head.")} == {"head.weight", "head.bias"}
    assert all(k.startswith("head.") or k.endswith(("relative_position_index", "attn_mask")) for k in report.unused)


def test_pretrained_path_in_the_config_uses_the_same_loader(imagenet_swin, tmp_path):
    timm_sd, original = imagenet_swin
    write_torch({"model": original}, tmp_path / "swin.pth")
    model = build_model(compose_model("xvlm_tiny3", ["bert_path=null", f"vision.pretrained_path={tmp_path}/swin.pth"]))
    check_loaded(model.vision_encoder, timm_sd, 4)


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence")  # inside timm's own loader
def test_timm_layout_safetensors_and_agreement_with_timms_loader(imagenet_swin, tmp_path):
    timm_sd, original = imagenet_swin
    write_safetensors(timm_sd, tmp_path / "model.safetensors")
    enc = VisionEncoder("swin_tiny_patch4_window7_224", 224, window_size=7, **SWIN)
    report = load_vision_checkpoint(enc, tmp_path / "model.safetensors")
    assert not report.resized and set(report.unused) == {"head.fc.weight", "head.fc.bias"}
    check_loaded(enc, timm_sd, 7)
    # timm's own filter for original Swin files, at window 4, gives the same tensors as ours
    write_torch({"model": original}, tmp_path / "orig.pth")
    theirs = timm.create_model("swin_tiny_patch4_window7_224", num_classes=0, img_size=128, window_size=4,
                               pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "orig.pth")), **SWIN)
    ours = VisionEncoder("swin_tiny_patch4_window7_224", 128, window_size=4, **SWIN)
    load_vision_checkpoint(ours, tmp_path / "orig.pth")
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.backbone.state_dict()[k], v), k


def test_imagenet_file_of_another_geometry_is_named(imagenet_swin, tmp_path):
    _, original = imagenet_swin
    write_torch({"model": original}, tmp_path / "swin.pth")
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch: source 'patch_embed\.proj\.weight'"):
        enc = VisionEncoder("swin_tiny_patch4_window7_224", 128, window_size=4, embed_dim=16, depths=(2, 2, 2),
                            num_heads=(2, 4, 8))
        load_vision_checkpoint(enc, tmp_path / "swin.pth")


def test_vit_imagenet_file_loads_with_resized_pos_embed(tmp_path):
    torch.manual_seed(0)
    vit = dict(patch_size=8, embed_dim=32, depth=1, num_heads=2)
    net = timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, **vit)
    write_torch({"model": net.state_dict()}, tmp_path / "deit.pth")
    enc = VisionEncoder("vit_tiny_patch16_224", 48, **vit)
    load_vision_checkpoint(enc, tmp_path / "deit.pth")
    assert enc.backbone.pos_embed.shape == (1, 37, 32)
    assert torch.equal(enc.backbone.pos_embed[:, 0], net.pos_embed[:, 0])
    assert torch.equal(enc.backbone.blocks[0].attn.qkv.weight, net.blocks[0].attn.qkv.weight)


def write_bert_dir(path, layers=4, mlm=True):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=layers, num_attention_heads=12,
                     intermediate_size=1536)  # xvlm_tiny3's geometry
    bert = BertForMaskedLM(cfg)
    with torch.no_grad():
        for p in bert.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    sd = bert.state_dict() if mlm else {k: v for k, v in bert.state_dict().items() if k.startswith("bert.")}
    path.mkdir()
    torch.save(sd, path / "pytorch_model.bin")
    return sd


def test_bert_directory_with_mlm_head(tmp_path):
    sd = write_bert_dir(tmp_path / "bert", layers=5)
    model = build_model(compose_model("xvlm_tiny3", ["bert_path=null"]))
    report = load_bert_dir(model, tmp_path / "bert")
    assert torch.equal(model.text_encoder.bert.encoder.layer[1].output.dense.weight,
                       sd["bert.encoder.layer.1.output.dense.weight"])
    assert torch.equal(model.fusion_encoder.layer[1].attention.self.query.weight,
                       sd["bert.encoder.layer.3.attention.self.query.weight"])
    assert torch.equal(model.mlm_head.cls.predictions.transform.dense.weight,
                       sd["cls.predictions.transform.dense.weight"])
    assert model.mlm_head.cls.predictions.decoder.weight is model.text_encoder.word_embeddings.weight
    assert any("bert.encoder.layer.4." in k for k in report.unused)
    assert all(".crossattention." in k or not k.startswith(("text_encoder", "fusion", "mlm"))
               for k in report.initialised)


def test_bert_directory_too_shallow(tmp_path):
    write_bert_dir(tmp_path / "bert", layers=3)
    with pytest.raises(Exception, match="fewer than 4 layers"):  # hydra wraps the ValueError
        build_model(compose_model("xvlm_tiny3", [f"bert_path={tmp_path}/bert"]))
