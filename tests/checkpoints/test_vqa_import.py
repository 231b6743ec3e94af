"""VQA imports (SPEC section 8) with every key accounted for: a pre-trained X-VLM in our layout and in the
reference's (decoder <- fusion layers, embeddings, MLM head), the reference's fine-tuned VQA layout
(``text_encoder.X`` / ``text_decoder.bert.X`` / ``text_decoder.cls.X``) and our own VQA checkpoints."""

import pytest
import torch

from xvlm_lit.checkpoints import CheckpointMismatchError, reference_state_dict
from xvlm_lit.checkpoints.sources import detect_layout
from xvlm_lit.checkpoints.vqa_keymap import import_vqa_state_dict, init_vqa_from
from xvlm_lit.models.xvlm import XVLM
from xvlm_lit.testing_vqa import micro_base, micro_vqa

REBUILT = ("relative_position_index", "attn_mask", "position_ids", "token_type_ids")


def equal_states(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def reference_vqa_layout(model) -> dict[str, torch.Tensor]:
    """``model`` (XVLMForVQA) under the names of the reference's ``model_vqa.XVLM.state_dict()`` (transformers 4.12:
    ``position_ids`` buffers saved; the encoder's ``bert.`` prefix stripped, no MLM head, no contrastive heads)."""
    shared = XVLM(model.vision_encoder, model.text_encoder, model.fusion_encoder, embed_dim=16)
    out = {}
    for key, value in reference_state_dict(shared).items():
        if key.startswith(("vision_proj.", "text_proj.", "itm_head.", "bbox_head.", "text_encoder.cls.")) or \
                key == "temp":
            continue
        out[key.replace("text_encoder.bert.", "text_encoder.", 1)] = value
    dec = model.answer_decoder
    for key, value in dec.embeddings.state_dict().items():
        out[f"text_decoder.bert.embeddings.{key}"] = value
    out["text_decoder.bert.embeddings.position_ids"] = torch.arange(dec.spec.max_position_embeddings)[None]
    for i, layer in enumerate(dec.layer):
        for key, value in layer.state_dict().items():
            out[f"text_decoder.bert.encoder.layer.{i}.{key}"] = value
    for key, value in dec.lm_head.cls.state_dict().items():
        out[f"text_decoder.cls.{key}"] = value
    return {k: v.clone() for k, v in out.items()}


def test_pretrained_ours_every_key_accounted_for():
    base, vqa = micro_base(seed=0), micro_vqa(seed=4)
    report = import_vqa_state_dict(vqa, base.state_dict())
    assert set(report.unused) == {k for k in base.state_dict()
                                  if k.startswith(("vision_proj.", "text_proj.", "itm_head.", "bbox_head."))
                                  or k == "temp"}
    assert all("crossattention.self.key" in k or "crossattention.self.value" in k for k in report.initialised)
    assert len(report.initialised) == 8  # 2 layers x (key, value) x (weight, bias)
    assert report.mapped["answer_decoder.layer.1.output.dense.weight"] == "fusion_encoder.layer.1.output.dense.weight"
    assert report.mapped["answer_decoder.lm_head.cls.predictions.transform.dense.weight"] == \
        "mlm_head.cls.predictions.transform.dense.weight"


def test_pretrained_reference_layout_maps_decoder_i_to_bert_layer_t_plus_i(tmp_path):
    base, vqa = micro_base(seed=0), micro_vqa(seed=4)
    sd = reference_state_dict(base)
    assert detect_layout(sd) == "reference"
    torch.save({"model": sd, "config": {}}, tmp_path / "pre.th")
    report = init_vqa_from(vqa, tmp_path / "pre.th")
    assert all(k.endswith(REBUILT) or k.startswith(("vision_proj.", "text_proj.", "itm_head.", "bbox_head."))
               or k == "temp" for k in report.unused)
    t = len(base.text_encoder.bert.encoder.layer)  # 1 text layer: fusion layer i is BERT layer 1 + i
    assert report.mapped["answer_decoder.layer.1.attention.self.query.weight"] == \
        f"text_encoder.bert.encoder.layer.{t + 1}.attention.self.query.weight"
    assert report.mapped["answer_decoder.lm_head.cls.predictions.bias"] == "text_encoder.cls.predictions.bias"
    assert torch.equal(vqa.answer_decoder.layer[1].crossattention.self.query.weight,
                       base.fusion_encoder.layer[1].crossattention.self.query.weight)
    for name, value in vqa.vision_encoder.state_dict().items():
        assert torch.equal(value, base.vision_encoder.state_dict()[name]), name


def test_reference_finetuned_vqa_layout_imports_every_tensor(tmp_path):
    trained = micro_vqa(seed=11)
    sd = reference_vqa_layout(trained)
    assert detect_layout(sd) == "reference_finetuned"
    torch.save({"model": sd, "config": {}}, tmp_path / "vqa.th")
    target = micro_vqa(seed=2)
    report = init_vqa_from(target, tmp_path / "vqa.th")
    assert not report.initialised  # the decoder's cross-attention K/V come from the file too
    assert all(k.endswith(REBUILT) for k in report.unused)
    equal_states(target, trained)
    assert report.mapped["answer_decoder.layer.0.crossattention.self.key.weight"] == \
        "text_decoder.bert.encoder.layer.0.crossattention.self.key.weight"


def test_reference_finetuned_vqa_layout_errors_name_the_keys():
    trained = micro_vqa(seed=11)
    sd = reference_vqa_layout(trained)
    extra = dict(sd, **{"text_decoder.bert.pooler.dense.weight": torch.zeros(2, 2)})
    with pytest.raises(CheckpointMismatchError, match="text_decoder.bert.pooler.dense.weight"):
        import_vqa_state_dict(micro_vqa(seed=2), extra)
    missing = {k: v for k, v in sd.items() if not k.startswith("text_decoder.bert.encoder.layer.1.")}
    with pytest.raises(CheckpointMismatchError, match=r"text_decoder\.bert\.encoder\.layer\.1\."):
        import_vqa_state_dict(micro_vqa(seed=2), missing)


def test_reference_finetuned_checkpoint_of_another_task_is_refused():
    base = micro_base(seed=0)
    sd = {k.replace("text_encoder.bert.", "text_encoder.", 1): v for k, v in reference_state_dict(base).items()
          if not k.startswith("text_encoder.cls.")}
    with pytest.raises(ValueError, match="another task"):
        import_vqa_state_dict(micro_vqa(seed=2), sd)


def test_our_vqa_checkpoint_is_the_identity(tmp_path):
    trained = micro_vqa(seed=11)
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()},
                "optimizer_states": []}, tmp_path / "last.ckpt")
    target = micro_vqa(seed=2)
    report = init_vqa_from(target, tmp_path / "last.ckpt")
    assert not report.initialised and not report.unused
    equal_states(target, trained)


def test_deeper_decoder_than_fusion_is_refused():
    from xvlm_lit.models.vqa import XVLMForVQA

    small = micro_vqa(seed=1)
    deep = XVLMForVQA(small.vision_encoder, small.text_encoder, small.fusion_encoder, decoder_layers=3)
    with pytest.raises(ValueError, match="decoder has 3 layers"):
        import_vqa_state_dict(deep, micro_base(seed=0).state_dict())
