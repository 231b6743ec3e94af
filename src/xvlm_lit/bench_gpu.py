"""``python -m xvlm_lit.bench --gpu-check`` (``make bench-gpu``): the base model at the real pre-training batch.

Swin-B 224 + BERT 6+6, bf16-mixed, 128 image-text pairs + 128 region texts (on 32 images) per step, 30 tokens,
all four losses, fused AdamW, ``torch.compile`` on the encoders; reports samples/s, MFU (achieved FLOP/s over the
device's bf16 data-sheet peak) and CUDA memory. Bounded to ``MAX_SECONDS``: a phase that would start after the bound
is skipped and named in the report.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from xvlm_lit.bench_step import StepCase, measure_case

MAX_SECONDS = 8 * 60
GPU_CASE = StepCase(model="xvlm_base", batch=128, region_texts=128, region_images=32, precision="bf16-mixed",
                    device="cuda", compile=True)


def gpu_case(args: argparse.Namespace) -> StepCase:
    """The check's geometry; ``--batch``/``--region-texts``/``--region-images``/``--precision``/``--steps`` and
    ``--grad-checkpointing`` may shrink or change it (``--compile`` is always on unless ``--no-compile`` was given
    through ``args.no_compile``)."""
    case = GPU_CASE
    if args.batch:
        case = replace(case, batch=args.batch)
    if args.region_texts is not None:
        case = replace(case, region_texts=args.region_texts)
    if args.region_images:
        case = replace(case, region_images=args.region_images)
    if args.precision not in ("auto", None):
        case = replace(case, precision=args.precision)
    return replace(case, device=args.device, grad_checkpointing=args.grad_checkpointing,
                   compile=not getattr(args, "no_compile", False))


def gpu_check(args: argparse.Namespace) -> dict:
    """Run the check; raises ``SystemExit`` with a clear message when no CUDA device is present."""
    if not torch.cuda.is_available() or not args.device.startswith("cuda"):
        raise SystemExit("--gpu-check needs a CUDA device (none found: torch.cuda.is_available() is False); "
                         "on CPU run `python -m xvlm_lit.bench --model xvlm_base --batch 8`")
    case = gpu_case(args)
    start = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "max_seconds": MAX_SECONDS}
    torch.cuda.reset_peak_memory_stats()
    # warm-up 3 steps absorb compilation (a few minutes for the first, recompiles for the 3T fusion shapes)
    result = measure_case(case, args.steps or 10, warmup=max(3, args.warmup), plugins=False)
    report["base_bf16_128+128"] = result
    report["samples_per_s"] = result["time"]["texts_per_s"]
    report["pairs_per_s"] = result["time"]["pairs_per_s"]
    report["mfu"] = result["flops"]["fraction_of_machine"]
    report["cuda_max_allocated_gib"] = result["memory"].get("cuda_max_allocated_gib")
    report["target_mfu"] = 0.40
    report["elapsed_s"] = time.perf_counter() - start
    if report["elapsed_s"] > MAX_SECONDS:
        report["over_time"] = True
    return report
