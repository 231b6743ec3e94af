"""Strictness: leftover, missing, mis-shaped and disagreeing tied keys are errors that name them; unsafe pickles
are refused unread."""

import pytest
import torch

from xvlm_lit.checkpoints import (
    CheckpointMismatchError,
    KeepInit,
    Rename,
    UnsafeCheckpointError,
    Unused,
    import_state_dict,
    init_from,
    load_reference_checkpoint,
    reference_keymap,
    reference_state_dict,
)
from xvlm_lit.testing import micro_xvlm

CALLS: list[str] = []


def _side_effect() -> str:
    CALLS.append("unpickled")
    return "boom"


class Payload:
    """A custom class whose unpickling would run code."""

    def __reduce__(self):
        return (_side_effect, ())


@pytest.fixture
def pair():
    a, b = micro_xvlm(0).eval(), micro_xvlm(1).eval()
    return a, b, {k: v.clone() for k, v in reference_state_dict(a).items()}


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_untouched(model, before):
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_unknown_extra_key_is_named(pair):
    _, b, ref = pair
    ref["vision_encoder.layers.9.blocks.0.mystery.weight"] = torch.zeros(3)
    before = snapshot(b)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected in source: 'vision_encoder\.layers\.9\.blocks\.0"
                                                      r"\.mystery\.weight'") as err:
        import_state_dict(b, ref, reference_keymap(b))
    assert len(err.value.problems) == 1
    assert_untouched(b, before)


def test_missing_key_is_named(pair):
    _, b, ref = pair
    del ref["bbox_head.3.weight"]
    del ref["text_encoder.bert.encoder.layer.1.crossattention.self.key.bias"]
    before = snapshot(b)
    with pytest.raises(CheckpointMismatchError) as err:
        import_state_dict(b, ref, reference_keymap(b))
    msg = str(err.value)
    assert "missing in source: 'bbox_head.3.weight' (for model key 'bbox_head.3.weight')" in msg
    assert "'text_encoder.bert.encoder.layer.1.crossattention.self.key.bias' (for model key " \
           "'fusion_encoder.layer.0.crossattention.self.key.bias')" in msg
    assert_untouched(b, before)


def test_shape_mismatch_is_named(pair):
    _, b, ref = pair
    ref["vision_proj.weight"] = torch.zeros(16, 7)
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch: source 'vision_proj\.weight' \(16, 7\) vs "
                                                      r"model 'vision_proj\.weight' \(16, 32\)"):
        import_state_dict(b, ref, reference_keymap(b))


def test_disagreeing_tied_tensors_are_an_error(pair):
    _, b, ref = pair
    ref["text_encoder.cls.predictions.decoder.weight"] = ref["text_encoder.cls.predictions.decoder.weight"] + 1
    with pytest.raises(CheckpointMismatchError, match="share one tensor but their sources"):
        import_state_dict(b, ref, reference_keymap(b))


def test_a_tied_tensor_present_once_is_enough(pair):
    a, b, ref = pair
    del ref["text_encoder.cls.predictions.decoder.weight"], ref["text_encoder.cls.predictions.decoder.bias"]
    report = import_state_dict(b, ref, reference_keymap(b))
    assert set(report.tied) == {"mlm_head.cls.predictions.decoder.weight", "mlm_head.cls.predictions.decoder.bias"}
    assert torch.equal(b.mlm_head.cls.predictions.decoder.weight, a.text_encoder.word_embeddings.weight)


def test_task_rules_are_mappings_added_in_front(pair, tmp_path):
    a, b, ref = pair
    # a task that re-initialises the ITM head and feeds bbox_head.0 from itm_head.0, and ignores an extra entry
    ref["answer_list_embedding"] = torch.zeros(2)
    torch.save({"model": ref}, tmp_path / "ref.th")
    before = b.itm_head[3].weight.clone()
    report = load_reference_checkpoint(
        b, tmp_path / "ref.th",
        rules=[KeepInit(r"itm_head\..+", "new task head"), Rename(r"bbox_head\.0\.(.+)", r"itm_head.0.\1")],
        unused=[Unused(r"answer_list_embedding", "not a weight"),
                Unused(r"itm_head\.[13]\..+|bbox_head\.0\..+", "replaced in this task")])
    assert torch.equal(b.itm_head[3].weight, before)
    assert torch.equal(b.bbox_head[0].weight, a.itm_head[0].weight)
    assert report.initialised["itm_head.3.weight"] == "new task head"
    assert report.keymap == "reference+task"
    # bbox_head.0.* of the file is now unconsumed and no rule lists it unused: an error, by name
    with pytest.raises(CheckpointMismatchError, match=r"unexpected in source: 'bbox_head\.0\.weight'"):
        load_reference_checkpoint(b, tmp_path / "ref.th",
                                  rules=[Rename(r"bbox_head\.0\.(.+)", r"itm_head.0.\1")],
                                  unused=[Unused(r"answer_list_embedding", "not a weight")])


def test_pickle_with_a_custom_class_is_refused_unread(pair, tmp_path):
    _, b, ref = pair
    path = tmp_path / "evil.th"
    torch.save({"model": ref, "config": Payload()}, path)
    CALLS.clear()
    with pytest.raises(UnsafeCheckpointError, match=r"refused to load .*evil\.th.*never unpickles arbitrary") as err:
        init_from(b, path)
    assert "_side_effect" in str(err.value)  # names what it would have needed
    assert CALLS == []


def test_not_a_checkpoint_structure(tmp_path, pair):
    _, b, _ = pair
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="top level is a list"):
        init_from(b, tmp_path / "list.pth")
    torch.save({"model": {"a": 1}}, tmp_path / "nontensor.pth")
    with pytest.raises(ValueError, match="non-tensor entries"):
        init_from(b, tmp_path / "nontensor.pth")
    with pytest.raises(FileNotFoundError):
        init_from(b, tmp_path / "absent.th")
