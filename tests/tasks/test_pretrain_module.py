"""PretrainModule: plugin-agnostic sum, logging, optimizer groups and schedule."""

from functools import partial

import pytest
import torch

from xvlm_lit.losses.bbox import BBoxLoss
from xvlm_lit.losses.itc import ITCLoss
from xvlm_lit.losses.itm import ITMLoss
from xvlm_lit.losses.mlm import MLMLoss
from xvlm_lit.tasks.optim import param_groups, warmup_linear_decay
from xvlm_lit.tasks.pretrain import PretrainModule
from xvlm_lit.testing import micro_xvlm, random_batch


def module(losses):
    return PretrainModule(micro_xvlm(), losses, partial(torch.optim.AdamW, lr=1e-4, weight_decay=0.01))


def step_batch(model):
    return {"itc": random_batch(model, 4, regions=False, seed=1), "region": random_batch(model, 2, 3, seed=2)}


def test_total_is_weighted_sum_of_every_loss_entry_over_streams():
    m = module({"itc": ITCLoss(weight=0.5), "mlm": MLMLoss(weight=2.0), "bbox": BBoxLoss()}).eval()
    batch = step_batch(m.model)
    torch.manual_seed(0)
    total, logs = m.compute_losses(batch)
    expected = sum(0.5 * logs[f"{s}/itc_loss"] + 2.0 * logs[f"{s}/mlm_loss"] for s in ("itc", "region"))
    expected += logs["region/bbox_l1_loss"] + logs["region/bbox_giou_loss"]
    assert torch.allclose(total, expected, atol=1e-6)
    assert "itc/bbox_l1_loss" not in logs  # image-text batches carry no boxes
    assert torch.allclose(logs["itc_loss"], logs["itc/itc_loss"] + logs["region/itc_loss"])


def test_dropping_a_plugin_changes_total_and_logged_terms_only():
    full = module({"itc": ITCLoss(), "itm": ITMLoss(), "mlm": MLMLoss(), "bbox": BBoxLoss()}).eval()
    no_box = module({"itc": ITCLoss(), "itm": ITMLoss(), "mlm": MLMLoss()}).eval()
    batch = step_batch(full.model)
    torch.manual_seed(0)
    t_full, l_full = full.compute_losses(batch)
    torch.manual_seed(0)
    t_nobox, l_nobox = no_box.compute_losses(batch)
    assert "bbox_l1_loss" in l_full and "bbox_l1_loss" not in l_nobox
    assert torch.allclose(t_full - t_nobox, l_full["bbox_l1_loss"] + l_full["bbox_giou_loss"], atol=1e-5)
    for key in ("itc_loss", "itm_loss", "mlm_loss"):
        assert torch.allclose(l_full[key], l_nobox[key])


def test_no_loss_selected_is_an_error():
    with pytest.raises(ValueError, match="no loss selected"):
        module({})


def test_param_groups_double_lr_for_new_parts_and_reference_no_decay_rule():
    model = micro_xvlm()
    groups = param_groups(model.named_parameters(), model.is_new_parameter, 1e-4, 0.01)
    by_name = {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["names"]}
    assert by_name["fusion_encoder.layer.0.crossattention.self.key.weight"] == (2e-4, 0.01)
    assert by_name["fusion_encoder.layer.0.crossattention.output.LayerNorm.weight"] == (2e-4, 0.0)
    assert by_name["fusion_encoder.layer.0.attention.self.key.weight"] == (1e-4, 0.01)
    assert by_name["temp"] == (2e-4, 0.01)  # the reference decays temp (no keyword matches)
    assert by_name["itm_head.1.weight"] == (2e-4, 0.01)  # and the heads' LayerNorm weights
    assert by_name["vision_proj.bias"] == (2e-4, 0.0)
    rel = [n for n in by_name if "relative_position_bias_table" in n]
    assert rel and all(by_name[n] == (1e-4, 0.0) for n in rel)
    assert by_name["mlm_head.cls.predictions.transform.dense.weight"] == (1e-4, 0.01)
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == sum(p.numel() for p in model.parameters())  # tied weights counted once


def test_schedule_warms_up_linearly_then_decays_to_zero():
    f = [warmup_linear_decay(s, 10, 110) for s in range(111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.5) and f[110] == 0.0
    assert all(a <= b for a, b in zip(f[:10], f[1:10], strict=False))


def test_temperature_clamped_before_each_step():
    m = module({"itc": ITCLoss()})
    with torch.no_grad():
        m.model.temp.fill_(0.9)
    m.on_train_batch_start({}, 0)
    assert float(m.model.temp) == pytest.approx(0.5)
