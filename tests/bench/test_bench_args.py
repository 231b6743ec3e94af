"""``python -m xvlm_lit.bench``: argument handling, the GPU check's geometry and its refusal on CPU."""

import pytest
import torch

from xvlm_lit.bench import BASE, TINY, custom_case, parse_args
from xvlm_lit.bench_gpu import GPU_CASE, gpu_case, gpu_check
from xvlm_lit.hardware import best_precision


def test_no_case_flag_means_the_standard_report():
    assert custom_case(parse_args([])) is None


def test_geometry_flags_make_one_case_from_the_model_defaults():
    case = custom_case(parse_args(["--model", "xvlm_base", "--batch", "4", "--precision", "32-true"]))
    assert (case.model, case.batch, case.region_texts, case.plugins) == ("xvlm_base", 4, 0, BASE.plugins)
    case = custom_case(parse_args(["--region-texts", "0", "--plugins", "itc,mlm", "--precision", "bf16-mixed"]))
    assert (case.model, case.batch, case.region_texts, case.plugins, case.precision) == \
        ("xvlm_tiny", TINY.batch, 0, ("itc", "mlm"), "bf16-mixed")


def test_auto_precision_follows_the_hardware(monkeypatch):
    monkeypatch.delenv("XVLM_PRECISION", raising=False)
    case = custom_case(parse_args(["--model", "xvlm_tiny"]))
    assert case.precision == best_precision("cpu")
    monkeypatch.setenv("XVLM_PRECISION", "32-true")
    assert custom_case(parse_args(["--model", "xvlm_tiny"])).precision == "32-true"


@pytest.mark.parametrize("argv, message", [
    (["--batch", "0"], "--batch must be positive"),
    (["--steps", "-1"], "--steps must be positive"),
    (["--precision", "fp8"], "invalid choice"),
])
def test_bad_arguments_are_refused_with_the_flag_named(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        parse_args(argv)
    assert err.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_cuda_device_and_gpu_check_are_refused_on_a_cpu_machine(capsys):
    with pytest.raises(SystemExit) as err:
        parse_args(["--device", "cuda"])
    assert err.value.code == 2 and "no CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--gpu-check needs a CUDA device"):
        gpu_check(parse_args(["--gpu-check"]))


def test_gpu_check_geometry_is_the_real_batch_and_flags_adjust_it():
    assert (GPU_CASE.model, GPU_CASE.batch, GPU_CASE.region_texts, GPU_CASE.precision, GPU_CASE.compile) == \
        ("xvlm_base", 128, 128, "bf16-mixed", True)
    args = parse_args(["--gpu-check", "--batch", "64", "--region-texts", "64", "--region-images", "16",
                       "--no-compile"])
    case = gpu_case(args)
    assert (case.batch, case.region_texts, case.region_images, case.compile, case.precision) == \
        (64, 64, 16, False, "bf16-mixed")


def test_standard_report_measures_tiny_and_base_in_each_precision(monkeypatch, tmp_path):
    from xvlm_lit import bench
    from xvlm_lit.bench_step import StepCase

    small = StepCase(model="xvlm_tiny", batch=2, region_texts=2, region_images=1, tokens=12, masks=2)
    monkeypatch.setattr(bench, "TINY", small)
    monkeypatch.setattr(bench, "BASE", StepCase(**{**small.__dict__, "region_texts": 0, "plugins": ("itc",)}))
    monkeypatch.setenv("XVLM_PRECISION", "bf16-mixed")
    report = bench.main(["--quick", "--steps", "1", "--loop-steps", "0", "--loader-workers", "0",
                         "--out", str(tmp_path / "r.json")])
    assert report["default_precision"] == "bf16-mixed"
    assert {"tiny_24+24_bf16-mixed", "tiny_24+24_32-true", "base_batch8_bf16-mixed"} <= set(report)
    assert "base_batch8_32-true" not in report  # --quick: base in the default precision only
    assert (tmp_path / "r.json").is_file() and "retrieval_eval_tiny_cpu" not in report
