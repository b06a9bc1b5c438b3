"""Measurement helpers shared by the benchmarks: timing, saved-for-backward bytes, environment."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

PRINT = functools.partial(print, flush=True)  # rows appear as measured, also when stdout is a file


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    step: Callable[[], object],
    device: torch.device,
    warmup: int = 2,
    repeats: int = 5,
    budget_s: float = 15.0,
) -> float:
    """Median wall time of ``step()`` over ``repeats`` calls after ``warmup`` calls (CUDA-synchronised).

    Slow steps are measured less often: once ``budget_s`` is spent, warm-up ends after its first call
    and timing after its third, so the largest sizes cannot stretch a benchmark run to hours.
    """
    start = time.perf_counter()
    for _ in range(warmup):
        step()
        if time.perf_counter() - start > budget_s / 4:
            break
    times: list[float] = []
    while len(times) < repeats and (len(times) < min(3, repeats) or sum(times) < budget_s):
        synchronize(device)
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def saved_tensor_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes of activations autograd saves for backward in one forward of ``module(x)``.

    Counted with ``torch.autograd.graph.saved_tensors_hooks``: every packed tensor's storage is
    counted once (a tensor saved by two ops is one allocation), and parameters are excluded
    (they are weights, not activations). Exact and device independent.
    """
    param_storages = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in param_storages:
            seen[ptr] = max(seen.get(ptr, 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x.requires_grad_(False)).float().sum()
    return sum(seen.values())


def cpu_name() -> str:
    """The CPU model as the OS names it (``/proc/cpuinfo`` on Linux), else the architecture."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    """Hardware and software facts to print beside every figure."""
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_results(prefix: str | Path, result: dict, markdown_text: str) -> list[Path]:
    """``PREFIX.json`` (the raw result) and ``PREFIX.md`` (its table), each written atomically."""
    from ..fileio import atomic_write, write_json

    json_path, md_path = Path(f"{prefix}.json"), Path(f"{prefix}.md")
    write_json(json_path, result)
    atomic_write(md_path, lambda tmp: tmp.write_text(markdown_text, encoding="utf-8"))
    return [json_path, md_path]
