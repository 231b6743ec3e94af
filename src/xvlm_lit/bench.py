"""``python -m xvlm_lit.bench [--out bench_report.json]``: training-step speed and memory, as a JSON report.

Measures a full pre-training step (image-text + region batch, all four losses, backward, AdamW) of the tiny
model on CPU and, when a GPU is present, of the base model in bf16. Targets are checked here, never in tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from xvlm_lit.build import build_model
from xvlm_lit.config import CONF_DIR
from xvlm_lit.tasks.pretrain import PretrainModule
from xvlm_lit.testing import random_batch

TARGETS = {"tiny_cpu_step_s_batch16": 1.0}


def build(model_name: str, plugins=("itc", "itm", "mlm", "bbox")) -> PretrainModule:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model_name}", "~experiment"])
    OmegaConf.resolve(OmegaConf.create({"model": cfg.model}))
    model = build_model(cfg.model)
    losses = {n: instantiate(cfg.loss[n]) for n in plugins}
    return PretrainModule(model, losses, partial(torch.optim.AdamW, lr=1e-4, foreach=True))


def time_steps(module: PretrainModule, batch_size: int, device: str, steps: int, precision: str | None,
               region: bool = True) -> dict:
    """Median wall time of a full training step: ``batch_size`` image-text pairs (+ ``batch_size`` region texts
    from ``batch_size/4`` images when ``region``), 30 tokens, all four losses, backward, clip, AdamW."""
    module.to(device).train()
    opt = module.optimizer_factory(module.model.parameters())
    L = 30
    batches = [{"itc": random_batch(module.model, batch_size, 1, L, 6, seed=s, regions=False),
                "region": random_batch(module.model, batch_size // 4, 4, L, 6, seed=s + 1) if region else None}
               for s in range(2)]
    batches = [{k: _to(v, device) for k, v in b.items()} for b in batches]
    times = []
    for i in range(steps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            total, _ = module.compute_losses(batches[i % 2])
        total.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # warm-up steps excluded
            times.append(time.perf_counter() - t0)
    texts = batch_size * (2 if region else 1)
    out = {"median_step_s": statistics.median(times), "min_step_s": min(times),
           "texts_per_s": texts / statistics.median(times)}
    if device == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def _to(batch, device):
    from dataclasses import fields, replace

    if batch is None:
        return None
    return replace(batch, **{f.name: getattr(batch, f.name).to(device) for f in fields(batch)
                             if getattr(batch, f.name) is not None})


def retrieval_memory(images: int, k: int) -> dict:
    """Run :mod:`xvlm_lit.bench_retrieval` in a fresh process (its peak RSS is its own) and return its report."""
    cmd = [sys.executable, "-m", "xvlm_lit.bench_retrieval", "--images", str(images), "--k", str(k)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"error": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench_report.json")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--retrieval-images", type=int, default=5000,
                        help="COCO-5K-sized retrieval evaluation (5 texts per image) in its own process; 0 = skip")
    parser.add_argument("--retrieval-k", type=int, default=2, help="ITM re-ranked candidates per query in that run")
    args = parser.parse_args()
    torch.manual_seed(0)
    report = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "machine": platform.processor()}
    tiny = build("xvlm_tiny")
    report["tiny_cpu_batch16_image_text"] = time_steps(tiny, 16, "cpu", args.steps, None, region=False)
    report["tiny_cpu_batch16_plus_region16"] = time_steps(tiny, 16, "cpu", args.steps, None, region=True)
    for key in ("tiny_cpu_batch16_image_text", "tiny_cpu_batch16_plus_region16"):
        report[key]["target_step_s"] = TARGETS["tiny_cpu_step_s_batch16"]
        report[key]["meets_target"] = report[key]["median_step_s"] < TARGETS["tiny_cpu_step_s_batch16"]
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name()
        report["base_cuda_bf16_batch64"] = time_steps(build("xvlm_base"), 64, "cuda", args.steps, "bf16")
    report["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if args.retrieval_images:
        report["retrieval_eval_tiny_cpu"] = retrieval_memory(args.retrieval_images, args.retrieval_k)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
