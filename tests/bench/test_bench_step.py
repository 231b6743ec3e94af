"""The step measurement on a small tiny-model geometry: phases, FLOPs, and the machine yardstick."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from xvlm_lit.bench_machine import gemm_rate
from xvlm_lit.bench_step import StepCase, build_module, make_batches, measure_case, step_flops

SMALL = StepCase(model="xvlm_tiny", batch=2, region_texts=2, region_images=1, tokens=12, masks=2,
                 precision="32-true")


def test_measure_case_reports_consistent_phases_flops_and_memory():
    r = measure_case(SMALL, steps=1, warmup=1)
    t = r["time"]
    assert t["forward_s"] > 0 and t["backward_s"] > 0 and t["optimizer_s"] > 0
    assert t["step_s"] == pytest.approx(t["forward_s"] + t["backward_s"] + t["optimizer_s"], rel=0.05)
    assert t["texts_per_s"] == pytest.approx(4 / t["step_s"])
    f = r["flops"]
    assert f["per_pair"] == f["per_step"] / 2 and f["per_text"] == f["per_step"] / 4
    assert f["fraction_of_machine"] == pytest.approx(f["achieved_flop_s"] / f["machine_flop_s"])
    assert set(r["plugin_forward_s"]) >= {"vision_encoder", "text_encoder", "itc", "itm", "mlm", "bbox"}
    assert r["memory"]["host_peak_rss_gib"] > 0.1


def test_step_flops_are_a_quadratic_in_the_batch_and_exceed_the_vision_encoder_alone():
    """Every op of the step is linear in the batch except ITC's B x B similarity (and the ITM negatives' draw,
    which uses no counted matmul): the count is exactly a + b*B + c*B^2, so its third difference over B = 2, 4,
    6, 8 is 0, and the quadratic part is a sliver of the per-pair cost. A count that depended on anything else
    (a forward counted twice for some batches, the optimizer or a warm-up counted, randomness) breaks it."""
    counts = []
    for b in (2, 4, 6, 8):
        case = StepCase(**{**SMALL.__dict__, "batch": b, "region_texts": 0})
        m = build_module(case)
        counts.append(step_flops(m, make_batches(m, case)[0], case))
    f2, f4, f6, f8 = counts
    assert f8 - 3 * f6 + 3 * f4 - f2 == 0
    first, second = f4 - f2, f6 - 2 * f4 + f2
    assert first > 0 and 0 <= second < 1e-3 * first
    one = StepCase(**{**SMALL.__dict__, "batch": 2, "region_texts": 0})
    m = build_module(one)
    with FlopCounterMode(display=False) as counter:  # independent count: the vision forward only
        m.model.encode_image(make_batches(m, one)[0]["itc"].images)
    assert f2 > 3 * counter.get_total_flops()  # forward + 2x backward of vision, plus text and fusion


def test_region_texts_must_divide_evenly_over_images():
    case = StepCase(**{**SMALL.__dict__, "region_texts": 3, "region_images": 2})
    with pytest.raises(ValueError, match="multiple of region_images"):
        make_batches(build_module(SMALL), case)


def test_gemm_rate_is_the_flops_of_the_product_over_its_time():
    rate = gemm_rate(torch.float32, m=256, k=128, n=256, repeats=3)
    assert 1e8 < rate < 1e14  # a real CPU: between 0.1 GFLOP/s and 100 TFLOP/s
