"""2-process gloo runs against 1 process on the concatenated batch."""

import pytest
import torch
import torch.multiprocessing as mp

from xvlm_lit.testing import concat_batches
from xvlm_lit.testing_dist import build_module, rank_batches, step_outputs, worker

pytestmark = pytest.mark.xdist_group("distributed")


def run_two_ranks(tmp_path, plugins, exact=True):
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(tmp_path), plugins, exact), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]


def single_process(plugins, exact=True):
    return step_outputs(build_module(plugins, exact), concat_batches(rank_batches(2)))


def assert_grads_equal(a, b, rtol=1e-5):
    """Every gradient equal up to float error: ``|a - b| <= rtol * |b|`` per tensor (norm-wise), plus 1e-8
    absolute for gradients that are analytically 0 (e.g. attention key biases)."""
    assert a.keys() == b.keys()
    for name in a:
        err = (a[name] - b[name]).norm()
        assert err <= rtol * b[name].norm() + 1e-8, (name, float(err), float(b[name].norm()))


def test_itc_two_ranks_equal_one_process_on_concatenated_batch(tmp_path):
    ranks = run_two_ranks(tmp_path, ["itc"])
    ref = single_process(["itc"])
    for out in ranks:
        assert abs(out["logs"]["itc_loss"] - ref["logs"]["itc_loss"]) < 1e-5
        assert_grads_equal(out["grads"], ref["grads"])
    assert ref["grads"]["vision_encoder.backbone.patch_embed.proj.weight"].abs().sum() > 0


def test_full_step_itc_mlm_bbox_two_ranks_equal_one_process(tmp_path):
    plugins = ["itc", "mlm", "bbox"]
    ranks = run_two_ranks(tmp_path, plugins)
    ref = single_process(plugins)
    for key in ("itc_loss", "mlm_loss", "bbox_l1_loss", "bbox_giou_loss"):
        mean = sum(out["logs"][key] for out in ranks) / 2  # per-rank means averaged, as DDP does
        assert abs(mean - ref["logs"][key]) < 1e-5, key
    assert_grads_equal(ranks[0]["grads"], ref["grads"])


def test_all_four_plugins_run_distributed_with_finite_losses(tmp_path):
    ranks = run_two_ranks(tmp_path, ["itc", "itm", "mlm", "bbox"])
    ref = single_process(["itc"])
    for out in ranks:
        assert all(v == v and abs(v) < 1e4 for v in out["logs"].values())
        assert abs(out["logs"]["itc_loss"] - ref["logs"]["itc_loss"]) < 1e-5
        assert all(torch.isfinite(g).all() for g in out["local_grads"].values())
    local0, local1 = ranks[0]["local_grads"], ranks[1]["local_grads"]
    name = "fusion_encoder.layer.0.crossattention.self.key.weight"  # ITM/MLM/box: each rank's own data
    assert not torch.allclose(local0[name], local1[name])  # the ranks really computed different gradients
    mean = {n: (local0[n] + local1[n]) / 2 for n in local0}  # the average, computed here from the ranks' own
    for out in ranks:
        assert_grads_equal(out["grads"], mean, rtol=1e-6)


def test_reference_gradient_mode_scales_feature_gradient_by_one_over_world(tmp_path):
    ranks = run_two_ranks(tmp_path, ["itc"], exact=False)
    ref = single_process(["itc"])
    grads = ranks[0]["grads"]
    assert torch.allclose(grads["temp"], ref["grads"]["temp"], rtol=1e-5)
    name = "text_proj.weight"
    assert torch.allclose(grads[name], ref["grads"][name] / 2, rtol=1e-5, atol=1e-8)
