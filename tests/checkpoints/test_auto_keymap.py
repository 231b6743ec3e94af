"""The generic importer (``model.init_from``, ``python -m xvlm_lit.eval``, ``xvlm_lit.load``) reads the reference's
fine-tuned VQA, NLVR2 and captioning files into the task models, every tensor equal to the task importer's."""

import torch

from xvlm_lit.checkpoints import init_from
from xvlm_lit.checkpoints.caption_keymap import init_caption
from xvlm_lit.checkpoints.nlvr_keymap import init_nlvr
from xvlm_lit.checkpoints.vqa_keymap import init_vqa_from
from xvlm_lit.testing import micro_xvlm
from xvlm_lit.testing_vqa import micro_vqa

from ..models.test_nlvr import micro_nlvr
from .test_caption_keymap import reference_caption_layout
from .test_nlvr_keymap import reference_nlvr_layout
from .test_vqa_import import equal_states, reference_vqa_layout


def _both(make, task_import, sd, path):
    """The model imported by the generic ``init_from`` and by the task importer from the same file."""
    torch.save({"model": sd, "config": {}}, path)
    generic, task = make(), make()
    report = init_from(generic, path)
    task_import(task, path)
    equal_states(generic, task)
    return generic, report


def test_reference_finetuned_vqa_through_init_from(tmp_path):
    trained = micro_vqa(seed=11)
    model, report = _both(lambda: micro_vqa(seed=2), init_vqa_from, reference_vqa_layout(trained), tmp_path / "v.th")
    assert not report.initialised
    equal_states(model, trained)  # the answer decoder too, which the base maps know nothing of


def test_reference_finetuned_nlvr_through_init_from(tmp_path):
    sd = reference_nlvr_layout(micro_nlvr(seed=2))
    model, report = _both(lambda: micro_nlvr(seed=3), init_nlvr, sd, tmp_path / "n.th")
    assert not report.initialised
    heads = {k: v for k, v in model.state_dict().items() if k.startswith("cls_head.")}
    assert heads and all(torch.equal(v, sd[k]) for k, v in heads.items())


def test_reference_caption_through_init_from(tmp_path):
    source = micro_xvlm(seed=4)
    model, report = _both(lambda: micro_xvlm(seed=8), init_caption, reference_caption_layout(source),
                          tmp_path / "c.th")
    assert torch.equal(model.fusion_encoder.layer[0].crossattention.self.key.weight,
                       source.fusion_encoder.layer[0].crossattention.self.key.weight)
    assert report.initialised  # the captioner has no contrastive/matching/box heads in the file
