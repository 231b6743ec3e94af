"""``python -m xvlm_lit.bench``: training-step speed, FLOP efficiency, memory, loop overhead and loader throughput.

With no case argument it writes the standard report (``make bench``): the tiny demo step (24 image-text pairs + 24
region texts, all four losses) and the base-geometry CPU step at batch 8 (Swin-B + BERT 6+6, ITC + ITM + MLM), each
in the default precision of this machine and in fp32; the Lightning loop against a bare loop; the 224 px loader.
``--model`` (or any geometry flag) measures that one case instead. ``--gpu-check`` runs the GPU check
(:mod:`xvlm_lit.bench_gpu`). Targets are reported here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from xvlm_lit.bench_step import StepCase, measure_case
from xvlm_lit.hardware import best_precision
from xvlm_lit.utils.host_memory import keep_freed_memory

TINY = StepCase(model="xvlm_tiny", batch=24, region_texts=24, region_images=8)
BASE = StepCase(model="xvlm_base", batch=8, region_texts=0, region_images=1, plugins=("itc", "itm", "mlm"))
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m xvlm_lit.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_report.json", help="JSON report path")
    p.add_argument("--quick", action="store_true", help="few steps, the base case in the default precision only")
    p.add_argument("--gpu-check", action="store_true", help="the GPU check: base, bf16, 128+128 batch, compile")
    p.add_argument("--model", help="measure one case of this conf/model (e.g. xvlm_tiny, xvlm_base)")
    p.add_argument("--batch", type=int, help="image-text pairs per step")
    p.add_argument("--region-texts", type=int, help="region texts per step (0 = no region batch)")
    p.add_argument("--region-images", type=int, help="images of the region batch (divides --region-texts)")
    p.add_argument("--tokens", type=int, default=30)
    p.add_argument("--plugins", default=None, help="comma-separated loss plugins (default itc,itm,mlm,bbox)")
    p.add_argument("--precision", choices=(*PRECISIONS, "auto"), default="auto",
                   help="auto = bf16-mixed where the hardware has native bf16, else 32-true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=None, help="timed steps per case")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="torch.compile the encoders")
    p.add_argument("--no-compile", action="store_true", help="--gpu-check without torch.compile")
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--no-fused-adamw", action="store_true", help="torch's default AdamW implementation instead")
    p.add_argument("--system-malloc", action="store_true",
                   help="keep the C library's malloc defaults (training keeps freed host memory: keep_host_memory)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--loop-steps", type=int, default=None, help="steps per loop in the Lightning-vs-bare run; 0 = skip")
    p.add_argument("--loader-workers", type=int, default=1, help="loader workers for the loader figure; 0 = skip")
    p.add_argument("--loader-dir", default=None, help="where the 224 px shapes shards are made (default: a temp dir)")
    p.add_argument("--retrieval-images", type=int, default=None,
                   help="COCO-5K-sized retrieval evaluation in its own process (default 5000 in the standard report, "
                        "0 = skip)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: no CUDA device on this machine")
    for name in ("batch", "region_texts", "region_images", "steps", "threads"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "region_texts" else 1):
            p.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    return args


def resolve_precision(args: argparse.Namespace) -> str:
    return best_precision("gpu" if args.device.startswith("cuda") else "cpu") if args.precision == "auto" \
        else args.precision


def custom_case(args: argparse.Namespace) -> StepCase | None:
    """The one case the geometry flags describe, or None for the standard report."""
    if not any(getattr(args, k) is not None for k in ("model", "batch", "region_texts", "region_images")):
        return None
    base = BASE if args.model == "xvlm_base" else TINY
    plugins = tuple(args.plugins.split(",")) if args.plugins else base.plugins
    return StepCase(model=args.model or base.model, batch=args.batch or base.batch,
                    region_texts=base.region_texts if args.region_texts is None else args.region_texts,
                    region_images=args.region_images or base.region_images, tokens=args.tokens, plugins=plugins,
                    precision=resolve_precision(args), device=args.device, compile=args.compile,
                    grad_checkpointing=args.grad_checkpointing, fused_adamw=not args.no_fused_adamw)


def standard_report(args: argparse.Namespace) -> dict:
    """The tiny and base cases in the default precision and fp32, loop overhead and loader throughput."""
    from dataclasses import replace

    from xvlm_lit.bench_loader import loader_throughput
    from xvlm_lit.bench_loop import loop_overhead

    default = resolve_precision(args)
    precisions = [default] if default == "32-true" else [default, "32-true"]
    quick = args.quick
    extra = dict(device=args.device, compile=args.compile, grad_checkpointing=args.grad_checkpointing,
                 fused_adamw=not args.no_fused_adamw)
    report: dict = {}
    for prec in precisions:
        tiny = replace(TINY, precision=prec, **extra)
        report[f"tiny_24+24_{prec}"] = measure_case(tiny, args.steps or (3 if quick else 10), args.warmup)
    for prec in precisions[:1] if quick else precisions:
        base = replace(BASE, precision=prec, **extra)
        report[f"base_batch8_{prec}"] = measure_case(base, args.steps or (1 if quick else 3), args.warmup)
    loop_steps = args.loop_steps if args.loop_steps is not None else (4 if quick else 10)
    if loop_steps:
        report["lightning_vs_bare_tiny"] = loop_overhead(replace(TINY, precision=default, **extra), loop_steps)
    if args.loader_workers:
        root = Path(args.loader_dir) if args.loader_dir else Path(tempfile.gettempdir()) / "xvlm_bench_shapes224"
        report["loader_224px"] = loader_throughput(root, args.loader_workers, batches=3 if quick else 8)
    return report


def retrieval_memory(images: int, k: int) -> dict:
    """Run :mod:`xvlm_lit.bench_retrieval` in a fresh process (its peak RSS is its own) and return its report."""
    cmd = [sys.executable, "-m", "xvlm_lit.bench_retrieval", "--images", str(images), "--k", str(k)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"error": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    kept = False if args.system_malloc else keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.gpu_check:
        from xvlm_lit.bench_gpu import gpu_check

        report = gpu_check(args)
    else:
        torch.manual_seed(0)
        report = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor(),
                  "default_precision": resolve_precision(args), "keep_host_memory": kept}
        case = custom_case(args)
        if case is not None:
            report["case"] = measure_case(case, args.steps or 3, args.warmup)
        else:
            report.update(standard_report(args))
        images = args.retrieval_images if args.retrieval_images is not None else (0 if case or args.quick else 5000)
        if images:
            report["retrieval_eval_tiny_cpu"] = retrieval_memory(images, 2)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
