"""Speed switches keep the step's outputs: activation checkpointing, fp32 ITC under bf16 autocast."""

import torch

from xvlm_lit.testing import random_batch
from xvlm_lit.testing_dist import build_module

PLUGINS = ["itc", "itm", "mlm", "bbox"]


def _step(checkpointing: bool, autocast: bool = False):
    module = build_module(PLUGINS)
    module.model.set_grad_checkpointing(checkpointing)
    batch = random_batch(module.model, 3, 2, seed=3)
    torch.manual_seed(0)  # ITM negatives are drawn
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        total, logs = module.compute_losses({"region": batch})
    total.backward()
    return logs, {n: p.grad for n, p in module.named_parameters() if p.grad is not None}


def test_activation_checkpointing_gives_the_same_losses_and_gradients():
    logs, grads = _step(False)
    logs_ck, grads_ck = _step(True)
    assert logs.keys() == logs_ck.keys() and all(torch.equal(logs[k], logs_ck[k]) for k in logs)
    assert grads.keys() == grads_ck.keys()
    for name in grads:
        torch.testing.assert_close(grads_ck[name], grads[name], rtol=1e-5, atol=1e-7, msg=name)


def test_bf16_autocast_step_is_finite_and_close_to_fp32():
    logs, _ = _step(False)
    logs_bf, grads_bf = _step(False, autocast=True)
    for key in ("itc_loss", "mlm_loss", "bbox_l1_loss"):
        assert torch.isfinite(logs_bf[key]) and abs(float(logs_bf[key]) - float(logs[key])) < 0.05 * abs(
            float(logs[key])) + 0.05, key
    assert all(torch.isfinite(g).all() for g in grads_bf.values())
