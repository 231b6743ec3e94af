"""One pre-training step, measured: forward / backward / optimizer, per plugin, FLOPs, memory, Lightning vs bare."""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, fields, replace
from functools import partial

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

from xvlm_lit.bench_machine import DTYPES, device_peak, peak_memory, sync
from xvlm_lit.build import build_model
from xvlm_lit.config import CONF_DIR
from xvlm_lit.losses.base import StepCache
from xvlm_lit.tasks.pretrain import PretrainModule
from xvlm_lit.testing import random_batch


@dataclass(frozen=True)
class StepCase:
    """A step geometry: ``batch`` image-text pairs of ``tokens`` tokens, plus ``region_texts`` region texts on
    ``region_images`` images (0 = no region batch)."""

    model: str = "xvlm_tiny"
    batch: int = 24
    region_texts: int = 24
    region_images: int = 8
    tokens: int = 30
    masks: int = 6
    plugins: tuple[str, ...] = ("itc", "itm", "mlm", "bbox")
    precision: str = "32-true"
    device: str = "cpu"
    compile: bool = False
    grad_checkpointing: bool = False
    fused_adamw: bool = True

    @property
    def texts(self) -> int:
        return self.batch + self.region_texts


def build_module(case: StepCase, seed: int = 0) -> PretrainModule:
    """The configured model (random init) and plugins, with the pre-training optimizer (4 groups) at lr 1e-4."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={case.model}", "~experiment"])
    torch.manual_seed(seed)
    model = build_model(cfg.model, load_weights=False)
    if case.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if case.compile:
        model.compile_encoders()
    losses = {n: instantiate(cfg.loss[n]) for n in case.plugins}
    opt = partial(torch.optim.AdamW, lr=1e-4, betas=(0.9, 0.98), weight_decay=0.01,
                  **({"fused": True} if case.fused_adamw else {}))
    return PretrainModule(model, losses, opt, warmup_steps=10, total_steps=10_000).to(case.device).train()


def make_batches(module: PretrainModule, case: StepCase, n: int = 2) -> list[dict]:
    """``n`` reproducible step batches on ``case.device``."""
    if case.region_texts and case.region_texts % case.region_images:
        raise ValueError(f"region_texts={case.region_texts} must be a multiple of region_images={case.region_images}")
    out = []
    for s in range(n):
        itc = random_batch(module.model, case.batch, 1, case.tokens, case.masks, seed=s, regions=False)
        region = None
        if case.region_texts:
            per_image = case.region_texts // case.region_images
            region = random_batch(module.model, case.region_images, per_image, case.tokens, case.masks, seed=s + 100)
        out.append({"itc": to_device(itc, case.device), "region": to_device(region, case.device)})
    return out


def to_device(batch, device: str):
    if batch is None:
        return None
    return replace(batch, **{f.name: getattr(batch, f.name).to(device) for f in fields(batch)
                             if isinstance(getattr(batch, f.name), torch.Tensor)})


def autocast(case: StepCase):
    dtype = DTYPES.get(case.precision, torch.float32)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(case.device.split(":")[0], dtype=dtype)


def optimizer(module: PretrainModule) -> torch.optim.Optimizer:
    """The optimizer :meth:`PretrainModule.configure_optimizers` builds (reference parameter groups)."""
    return module.configure_optimizers()["optimizer"]


def timed_step(module: PretrainModule, opt: torch.optim.Optimizer, batch: dict, case: StepCase) -> dict[str, float]:
    """One full step: temperature clamp, losses (forward), backward, grad-norm clip 1.0, AdamW, zero_grad."""
    dev = case.device
    sync(dev)
    c0, t0 = time.process_time(), time.perf_counter()
    with torch.no_grad():
        module.model.temp.clamp_(*module.temp_range)
    with autocast(case):
        total, _ = module.compute_losses(batch)
    sync(dev)
    t1 = time.perf_counter()
    total.backward()
    sync(dev)
    t2 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync(dev)
    t3 = time.perf_counter()
    # process CPU seconds (all threads): robust to other load on a shared machine, unlike wall time
    return {"forward_s": t1 - t0, "backward_s": t2 - t1, "optimizer_s": t3 - t2, "step_s": t3 - t0,
            "step_cpu_s": time.process_time() - c0}


def time_steps(module: PretrainModule, batches: list[dict], case: StepCase, steps: int, warmup: int = 1) -> dict:
    """Median (and min) of each phase over ``steps`` steps after ``warmup`` (compile/allocator warm-up)."""
    opt = optimizer(module)
    rows = [timed_step(module, opt, batches[i % len(batches)], case) for i in range(warmup + steps)][warmup:]
    out = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    out["min_step_s"] = min(r["step_s"] for r in rows)
    out["steps"] = steps
    out["texts_per_s"] = case.texts / out["step_s"]
    out["pairs_per_s"] = case.batch / out["step_s"]
    return out


def plugin_forward_times(module: PretrainModule, batch: dict, case: StepCase) -> dict[str, float]:
    """Forward seconds of the shared encodings (vision, text, features) and of each plugin on them, summed over
    the streams; backward is not attributable per plugin (one graph)."""
    out: dict[str, float] = {}

    def clock(key: str, fn) -> None:
        sync(case.device)
        t0 = time.perf_counter()
        fn()
        sync(case.device)
        out[key] = out.get(key, 0.0) + time.perf_counter() - t0

    with autocast(case):
        for sub in batch.values():
            if sub is None:
                continue
            cache = StepCache(module.model, sub)
            clock("vision_encoder", lambda c=cache: c.images_encoded)
            clock("text_encoder", lambda c=cache: c.text_hidden)
            clock("features", lambda c=cache: (c.image_feat, c.text_feat, c.full_image_tokens))
            for name, plugin in module.losses.items():
                clock(name, lambda p=plugin, s=sub, c=cache: p(module.model, s, c))
    return out


def step_flops(module: PretrainModule, batch: dict, case: StepCase) -> int:
    """FLOPs of one forward + backward (``torch.utils.flop_counter``: matmuls, convolutions, attention)."""
    counter = FlopCounterMode(display=False)
    with counter:
        with autocast(case):
            total, _ = module.compute_losses(batch)
        total.backward()
    module.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def measure_case(case: StepCase, steps: int, warmup: int = 1, plugins: bool = True) -> dict:
    """The full report of one geometry: phases, per plugin, FLOPs, achieved FLOP/s vs the machine, memory."""
    module = build_module(case)
    batches = make_batches(module, case)
    report: dict = {"case": {f.name: getattr(case, f.name) for f in fields(case)},
                    "threads": torch.get_num_threads(),
                    "parameters_m": sum(p.numel() for p in module.parameters()) / 1e6}
    report["time"] = time_steps(module, batches, case, steps, warmup)
    if plugins:
        report["plugin_forward_s"] = plugin_forward_times(module, batches[0], case)
    flops = step_flops(module, batches[0], case)
    rate, source = device_peak(case.device, case.precision)
    achieved = flops / report["time"]["step_s"]
    report["flops"] = {"per_step": flops, "per_pair": flops / case.batch, "per_text": flops / case.texts,
                       "achieved_flop_s": achieved, "machine_flop_s": rate, "machine_source": source,
                       "fraction_of_machine": achieved / rate}
    report["memory"] = peak_memory(case.device)
    return report
