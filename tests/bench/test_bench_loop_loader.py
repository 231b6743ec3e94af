"""The Lightning-vs-bare loop figure and the loader figure run end to end on small settings."""

import pytest

from xvlm_lit.bench_loader import loader_throughput
from xvlm_lit.bench_loop import bare_loop, loop_overhead
from xvlm_lit.bench_step import StepCase

SMALL = StepCase(model="xvlm_tiny", batch=2, region_texts=2, region_images=1, tokens=12, masks=2,
                 precision="bf16-mixed")


@pytest.mark.slow
def test_loop_overhead_times_both_loops_over_the_same_steps():
    out = loop_overhead(SMALL, steps=2, warmup=1)
    assert out["steps_each"] == 4  # 2 steps x 2 alternations
    assert out["overhead_ratio"] == pytest.approx(out["lightning_step_s"] / out["bare_step_s"])


def test_bare_loop_returns_one_time_per_timed_step():
    times = bare_loop(SMALL, steps=2, warmup=1)
    assert len(times) == 2 and all(t > 0 for t in times)


@pytest.mark.slow
def test_loader_throughput_counts_valid_samples(tmp_path):
    out = loader_throughput(tmp_path / "shapes", workers=1, batches=2, batch=4, region_texts=4, region_images=2,
                            n_train=32)
    assert out["samples_per_s"] > 0 and out["images_per_s"] > 0
    assert out["samples_per_s_per_worker"] == out["samples_per_s"]
    assert out["image_size"] == 224
