"""The machine a benchmark ran on, named in every table header: CPU model, the vector and matrix units it has, what
torch's kernels may use of them, threads and the environment that changes them (times depend on all of these)."""
from __future__ import annotations

import math
import os
import platform
from pathlib import Path

# environment variables that change which kernels run or how many threads they use
ENV_KEYS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
            "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS",
            "ONEDNN_MAX_CPU_ISA")
# the CPU flags that decide training and inference speed here
FLAG_PREFIXES = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx", "fma", "asimd", "sve", "i8mm", "asimddp")


def cpu_model() -> str:
    """The model name, with family and model numbers (a VM often shows only "AMD EPYC" or "Intel Xeon Processor")."""
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return platform.processor() or platform.machine()
    fields = {}
    for line in info.read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
        if not line.strip():
            break
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def cpu_flags() -> list[str]:
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return []
    for line in info.read_text().splitlines():
        if line.startswith(("flags", "Features")):
            return sorted({flag for flag in line.split(":", 1)[1].split() if flag.startswith(FLAG_PREFIXES)})
    return []


def matmul_gflops(size: int = 1024, repeats: int = 5) -> float:
    """Single-thread float32 matmul speed in torch, the number that says most about training time on a CPU."""
    import time

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        best = math.inf
        for _ in range(repeats):
            began = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - began)
    finally:
        torch.set_num_threads(threads)
    return 2 * size ** 3 / best / 1e9


def machine_line() -> str:
    """One line: CPU model, its speed-deciding flags, torch's kernel level and matmul speed, CPUs, load and the kernel
    environment."""
    env = ", ".join(f"{k}={os.environ[k]}" for k in ENV_KEYS if k in os.environ) or "no kernel/thread env set"
    try:
        import torch
        kernels = (f"torch {torch.__version__} kernels {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads, "
                   f"fp32 matmul {matmul_gflops():.0f} GFLOP/s on 1 thread")
    except ImportError:
        kernels = "no torch"
    return (f"{cpu_model()} ({' '.join(cpu_flags()) or 'flags unknown'}); {kernels}; {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}; {env}")
