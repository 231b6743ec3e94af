"""NLVR2 checkpoint layouts (SPEC section 8): every key of a pre-trained X-VLM (ours or the reference's) and of the
reference's NLVR checkpoints (``NLVR.py``: ``cls_head``; ``NLVR_pretrain.py``: ``vision_proj`` + ``ta_head``) is
loaded or named unused, and every model tensor is loaded or named new."""

import copy

import pytest
import torch

from xvlm_lit.checkpoints import CheckpointMismatchError, init_from, reference_state_dict
from xvlm_lit.checkpoints.importer import import_state_dict
from xvlm_lit.checkpoints.nlvr_keymap import init_nlvr, nlvr_keymap
from xvlm_lit.checkpoints.sources import Source, detect_layout

from ..models.test_nlvr import PAIRS, micro_nlvr, micro_pretrained

REBUILT = ("relative_position_index", "attn_mask", "position_ids")


def reference_nlvr_layout(model, source_seed: int = 11) -> dict:
    """What the reference's NLVR.py saves for ``model``'s geometry: a BERT of 1 + 2*PAIRS layers named
    ``text_encoder.{embeddings,encoder.layer.i}`` (no ``bert.``, no MLM head), the pair's K/V one tensor under both
    names, plus the model's heads."""
    xvlm = micro_pretrained(seed=source_seed)
    for _ in range(PAIRS):  # 2 * PAIRS fusion layers, consecutive as in the reference's 18-layer BERT
        xvlm.fusion_encoder.layer.append(copy.deepcopy(xvlm.fusion_encoder.layer[0]))
    torch.manual_seed(source_seed)
    with torch.no_grad():
        for p in xvlm.fusion_encoder.parameters():
            p.normal_(std=0.05)
    sd = {}
    for key, value in reference_state_dict(xvlm).items():
        if key.startswith("text_encoder.bert."):
            sd[key.replace("text_encoder.bert.", "text_encoder.", 1)] = value
        elif key.startswith("vision_encoder."):
            sd[key] = value
    t = len(xvlm.text_encoder.bert.encoder.layer)
    for k in range(PAIRS):  # shared in the reference: layer 2k's K/V are layer 2k+1's
        for name in ("key", "value"):
            for kind in ("weight", "bias"):
                even = f"text_encoder.encoder.layer.{t + 2 * k}.crossattention.self.{name}.{kind}"
                sd[even] = sd[f"text_encoder.encoder.layer.{t + 2 * k + 1}.crossattention.self.{name}.{kind}"]
    torch.manual_seed(source_seed + 1)
    for name, p in model.named_parameters():
        if name.startswith(("cls_head.", "ta_head.", "vision_proj.")):
            sd[name] = torch.randn_like(p)
    return sd


def assert_all_loaded(model, sd, t=1):
    ours = model.state_dict()
    for key, value in ours.items():
        if key.startswith("vision_encoder."):
            continue  # Swin names differ (checked by the base importer's tests); loaded, or the import would raise
        if key.startswith("text_encoder.bert."):
            src = key.replace("text_encoder.bert.", "text_encoder.", 1)
        elif key.startswith("fusion_encoder.layer."):
            j, rest = key.removeprefix("fusion_encoder.layer.").split(".", 1)
            src = f"text_encoder.encoder.layer.{t + int(j)}.{rest}"
        else:
            src = key
        assert torch.equal(value, sd[src]), key


def test_reference_finetuned_nlvr_checkpoint_imports_every_key(tmp_path):
    model = micro_nlvr(seed=2)
    sd = reference_nlvr_layout(model)
    assert detect_layout(sd) == "reference_finetuned"
    torch.save({"model": sd, "config": {}}, tmp_path / "nlvr_ft.th")
    report = init_nlvr(model, tmp_path / "nlvr_ft.th")
    assert not report.initialised  # cls_head included
    assert all(k.endswith(REBUILT) for k in report.unused)
    assert_all_loaded(model, sd)
    key = model.fusion_encoder.layer[1].crossattention.self.key.weight
    assert key is model.fusion_encoder.layer[0].crossattention.self.key.weight  # still one tensor after loading
    assert "fusion_encoder.layer.1.crossattention.self.key.weight" in report.tied


def test_reference_text_assignment_checkpoint_feeds_both_stages(tmp_path):
    ta = micro_nlvr(seed=2, text_assignment=True)
    sd = reference_nlvr_layout(ta)
    assert "ta_head.weight" in sd and "vision_proj.weight" in sd and "cls_head.0.weight" not in sd
    torch.save({"model": sd}, tmp_path / "nlvr_pretrain.th")
    init_nlvr(ta, tmp_path / "nlvr_pretrain.th")
    assert_all_loaded(ta, sd)
    ft = micro_nlvr(seed=4)
    report = init_nlvr(ft, tmp_path / "nlvr_pretrain.th")  # NLVR.py --load_nlvr_pretrain
    assert set(report.initialised) == {k for k in ft.state_dict() if k.startswith("cls_head.")}
    assert {"ta_head.weight", "ta_head.bias", "vision_proj.weight", "vision_proj.bias"} <= set(report.unused)


def test_pair_layers_must_agree_on_their_shared_key_value():
    model = micro_nlvr()
    sd = reference_nlvr_layout(model)
    sd["text_encoder.encoder.layer.1.crossattention.self.key.weight"] = torch.zeros_like(
        sd["text_encoder.encoder.layer.1.crossattention.self.key.weight"])
    source = Source(sd, "reference_finetuned", "model", "<bad>")
    with pytest.raises(CheckpointMismatchError, match="share one tensor"):
        import_state_dict(model, sd, nlvr_keymap(model, source))


@pytest.mark.parametrize("layout", ["reference", "ours"])
def test_pretrained_xvlm_initialises_both_layers_of_each_pair(layout):
    source = micro_pretrained()
    sd = reference_state_dict(source) if layout == "reference" else source.state_dict()
    model = micro_nlvr(seed=9)
    report = import_state_dict(model, sd, nlvr_keymap(model, Source(sd, layout, "model", "<pretrained>")))
    assert set(report.initialised) == {k for k in model.state_dict() if k.startswith("cls_head.")}
    assert any(k.startswith(("itm_head.", "text_encoder.cls.", "mlm_head.")) for k in report.unused)
    ours, theirs = model.state_dict(), source.state_dict()
    for key in ours:
        if key.startswith("fusion_encoder.layer."):
            j, rest = key.removeprefix("fusion_encoder.layer.").split(".", 1)
            assert torch.equal(ours[key], theirs[f"fusion_encoder.layer.{int(j) // 2}.{rest}"]), key
        elif key.startswith(("text_encoder.", "vision_encoder.")):
            assert torch.equal(ours[key], theirs[key]), key


def test_text_assignment_stage_reads_vision_proj_from_pretraining():
    source = micro_pretrained()
    sd = source.state_dict()
    model = micro_nlvr(text_assignment=True)
    report = import_state_dict(model, sd, nlvr_keymap(model, Source(sd, "ours", "model", "<pretrained>")))
    assert torch.equal(model.vision_proj.weight, source.vision_proj.weight)
    assert set(report.initialised) == {"ta_head.weight", "ta_head.bias"}


def test_our_nlvr_checkpoint_round_trips_through_the_generic_importer(tmp_path):
    trained = micro_nlvr(seed=5)
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()}}, tmp_path / "n.ckpt")
    fresh = micro_nlvr(seed=6)
    init_from(fresh, tmp_path / "n.ckpt")  # what python -m xvlm_lit.eval does
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    again = micro_nlvr(seed=7)
    init_nlvr(again, tmp_path / "n.ckpt")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in trained.state_dict().items())
