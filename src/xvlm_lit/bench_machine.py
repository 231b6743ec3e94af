"""The machine's own yardsticks: its measured GEMM rate (CPU) or the device's peak (GPU), and peak memory."""

from __future__ import annotations

import resource
import statistics
import time

import torch

#: dense bf16 tensor-core peak FLOP/s of known GPUs (vendor data sheets, no sparsity)
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}

DTYPES = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def gemm_rate(dtype: torch.dtype = torch.float32, device: str = "cpu", m: int = 2048, k: int = 1024,
              n: int = 2048, repeats: int = 5) -> float:
    """Median FLOP/s of ``torch.mm`` ``[m, k] @ [k, n]`` in ``dtype`` at the current thread count.

    The default shape is that of the base model's FFN / QKV GEMMs (K=1024 like Swin-B's last stages, a few thousand
    token rows): what the training step's matmuls could reach on this machine.
    """
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(m, k, generator=g, device=device).to(dtype)
    b = torch.randn(k, n, generator=g, device=device).to(dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2.0 * m * k * n / statistics.median(times)


def device_peak(device: str, precision: str) -> tuple[float, str]:
    """``(FLOP/s, source)``: a GPU's data-sheet bf16 peak when known (MFU), else the GEMM rate measured here."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        for key, peak in GPU_PEAK_BF16.items():
            if key in name:
                return (peak if precision != "32-true" else peak / 2), f"data sheet ({key}, dense)"
    return gemm_rate(DTYPES.get(precision, torch.float32), device), "measured torch.mm rate"


def peak_memory(device: str) -> dict:
    """Host peak RSS of this process (GiB) and, on CUDA, the allocator's peak."""
    out = {"host_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if device.startswith("cuda"):
        out["cuda_max_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out
