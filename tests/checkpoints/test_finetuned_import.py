"""Reference fine-tuned checkpoints (SPEC section 8: ``text_encoder.bert.X`` -> ``text_encoder.X``, no
``text_encoder.cls``) import with every key accounted for."""

import torch

from xvlm_lit.checkpoints import init_from, reference_state_dict
from xvlm_lit.checkpoints.sources import detect_layout
from xvlm_lit.testing import micro_xvlm


def finetuned_layout(sd: dict, drop: tuple[str, ...]) -> dict:
    """Rename a reference pre-training state dict as the reference's fine-tuning code saves it."""
    out = {}
    for key, value in sd.items():
        if key.startswith("text_encoder.cls.") or key.startswith(drop):
            continue
        out[key.replace("text_encoder.bert.", "text_encoder.", 1)] = value
    return out


def check_import(tmp_path, drop, kept_heads):
    torch.manual_seed(1)
    source = micro_xvlm(seed=5)
    sd = finetuned_layout(reference_state_dict(source), drop)
    assert any(k.startswith("text_encoder.encoder.layer.") for k in sd) and detect_layout(sd) == "reference_finetuned"
    torch.save({"model": sd, "config": {}}, tmp_path / "ft.th")
    target = micro_xvlm(seed=9)
    report = init_from(target, tmp_path / "ft.th")
    # the import is strict (it raises on any key left over); only rebuilt buffers are intentionally unused
    assert all(k.endswith(("relative_position_index", "attn_mask", "position_ids")) for k in report.unused)
    ours, theirs = target.state_dict(), source.state_dict()
    for key in ours:
        if key.startswith("mlm_head.") and "decoder.weight" not in key or key.startswith(kept_heads):
            assert key in report.initialised, key
        else:
            assert torch.equal(ours[key], theirs[key]), key
    return report


def test_reference_retrieval_checkpoint_imports(tmp_path):
    report = check_import(tmp_path, drop=("bbox_head.",), kept_heads=("bbox_head.",))
    assert any(k.startswith("bbox_head.") for k in report.initialised)


def test_reference_grounding_checkpoint_imports(tmp_path):
    report = check_import(tmp_path, drop=("itm_head.",), kept_heads=("itm_head.",))
    assert any(k.startswith("itm_head.") for k in report.initialised)
