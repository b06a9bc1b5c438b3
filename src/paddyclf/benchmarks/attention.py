"""``paddyclf benchmark attention``: softmax BoT vs linear BoT, as a block and as a whole model.

For each image size S the block sees a 576 x S/32 x S/32 map: N = (S/32)^2 tokens of head dim d.
Per variant, scope (block / model) and size it records fwd+bwd time per image, inference images/s,
activation bytes saved for backward per image, CUDA peak memory per image (on a GPU), the largest
batch that fits a memory budget, and the theoretical attention cost N^2 d vs N d^2.
Linear attention wins only where N > d; the table shows from which size on that is true.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..fileio import atomic_path, write_json
from ..models import BoTNetBlock, BoTNetBlockLinear, create_model
from ..models.classifiers import feature_size
from .common import PRINT, environment, median_seconds, saved_tensor_bytes, synchronize

VARIANTS = {
    "softmax": ("BoTNetBlock", "MobileNetV3_Small_BoT"),
    "linear": ("BoTNetBlockLinear", "MobileNetV3_Small_BoT_Linear"),
}
DEFAULT_SIZES = (224, 320, 384, 512, 768, 1024, 2048)
CHANNELS = 576
HEADS = 4
NUM_CLASSES = 10


@dataclass
class Setup:
    device: torch.device
    batch_size: int
    memory_budget_gb: float
    warmup: int = 2
    repeats: int = 5


def build(variant: str, scope: str, image_size: int) -> nn.Module:
    """The module under test: the block alone (576 channels) or the whole classifier."""
    if scope == "block":
        if variant == "softmax":
            return BoTNetBlock(CHANNELS, HEADS, feature_size(image_size))
        return BoTNetBlockLinear(CHANNELS, HEADS)
    return create_model(VARIANTS[variant][1], num_classes=NUM_CLASSES, heads=HEADS, image_size=image_size)


def make_input(scope: str, image_size: int, batch: int, device: torch.device) -> torch.Tensor:
    if scope == "block":
        h, w = feature_size(image_size)
        return torch.randn(batch, CHANNELS, h, w, device=device)
    return torch.randn(batch, 3, image_size, image_size, device=device)


def train_step_seconds(module: nn.Module, x: torch.Tensor, setup: Setup) -> float:
    def step():
        module.zero_grad(set_to_none=True)
        module(x).float().sum().backward()

    return median_seconds(step, setup.device, setup.warmup, setup.repeats)


@torch.no_grad()
def inference_seconds(module: nn.Module, x: torch.Tensor, setup: Setup) -> float:
    return median_seconds(lambda: module(x), setup.device, setup.warmup, setup.repeats)


def cuda_peak_bytes(module: nn.Module, x: torch.Tensor) -> int:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(x.device)
    base = torch.cuda.memory_allocated(x.device)
    module.zero_grad(set_to_none=True)
    module(x).float().sum().backward()
    synchronize(x.device)
    return torch.cuda.max_memory_allocated(x.device) - base


def static_bytes(module: nn.Module) -> int:
    """Weights + gradients + AdamW's two moments: 4 copies of the parameters."""
    return 4 * sum(p.numel() * p.element_size() for p in module.parameters())


def largest_batch_cuda(module: nn.Module, scope: str, image_size: int, setup: Setup, limit: int = 4096) -> int:
    """Largest batch whose training step fits both the budget and the GPU (doubling, then bisection)."""
    budget = setup.memory_budget_gb * 2**30 - static_bytes(module)

    def fits(batch: int) -> bool:
        try:
            x = make_input(scope, image_size, batch, setup.device)
            return cuda_peak_bytes(module, x) <= budget
        except torch.OutOfMemoryError:
            return False
        finally:
            module.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()

    lo, hi = 0, 1
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def measure(variant: str, scope: str, image_size: int, setup: Setup) -> dict:
    """One table row."""
    torch.manual_seed(0)
    module = build(variant, scope, image_size).to(setup.device).train()
    x = make_input(scope, image_size, setup.batch_size, setup.device)
    h, w = feature_size(image_size)
    n, d = h * w, CHANNELS // 4 // HEADS
    saved = saved_tensor_bytes(module, x) / setup.batch_size
    row = {
        "variant": variant,
        "scope": scope,
        "image_size": image_size,
        "tokens": n,
        "head_dim": d,
        "attention_cost_theory": n * n * d if variant == "softmax" else n * d * d,
        "train_ms_per_image": 1e3 * train_step_seconds(module, x, setup) / setup.batch_size,
        "saved_bytes_per_image": int(saved),
    }
    module.eval()
    row["inference_images_per_s"] = setup.batch_size / inference_seconds(module, x, setup)
    module.train()
    if setup.device.type == "cuda":
        row["cuda_peak_bytes_per_image"] = int(cuda_peak_bytes(module, x) / setup.batch_size)
        row["max_batch_in_budget"] = largest_batch_cuda(module, scope, image_size, setup)
        row["max_batch_method"] = "trial on CUDA"
    else:
        free = setup.memory_budget_gb * 2**30 - static_bytes(module)
        row["max_batch_in_budget"] = max(0, math.floor(free / saved))
        row["max_batch_method"] = "budget - 4x params (weights, grads, AdamW) / saved bytes per image"
    return row


def ratios(rows: list[dict]) -> list[dict]:
    """Linear vs softmax per (scope, size): time, memory and speed ratios (> 1 means linear is better)."""
    by_key = {(r["scope"], r["image_size"], r["variant"]): r for r in rows}
    out = []
    for (scope, size, variant), soft in by_key.items():
        lin = by_key.get((scope, size, "linear"))
        if variant != "softmax" or lin is None:
            continue
        out.append(
            {
                "scope": scope,
                "image_size": size,
                "tokens": soft["tokens"],
                "train_speedup": soft["train_ms_per_image"] / lin["train_ms_per_image"],
                "inference_speedup": lin["inference_images_per_s"] / soft["inference_images_per_s"],
                "saved_memory_reduction": 1 - lin["saved_bytes_per_image"] / soft["saved_bytes_per_image"],
                "max_batch_ratio": lin["max_batch_in_budget"] / max(soft["max_batch_in_budget"], 1),
            }
        )
    return out


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        "# Attention benchmark: BoTNetBlock (softmax) vs BoTNetBlockLinear",
        "",
        f"device {env['device']}{' (' + env['gpu'] + ')' if 'gpu' in env else ''}, torch {env['torch']}, "
        f"{env['threads']} threads, float32, batch {result['batch_size']}, "
        f"memory budget {result['memory_budget_gb']} GB; times are medians of up to "
        f"{result['repeats']} steps (at least 3; slow steps stop after a 15 s budget).",
        "",
        "| scope | size | tokens N | variant | fwd+bwd ms/img | infer img/s | saved MiB/img | max batch "
        "| N^2d or Nd^2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['scope']} | {r['image_size']} | {r['tokens']} | {r['variant']} | {r['train_ms_per_image']:.2f} | "
            f"{r['inference_images_per_s']:.1f} | {r['saved_bytes_per_image'] / 2**20:.2f} | "
            f"{r['max_batch_in_budget']} | {r['attention_cost_theory']:,} |"
        )
    lines += [
        "",
        "Linear relative to softmax (> 1 or > 0 means linear is better):",
        "",
        "| scope | size | tokens | train speed-up | inference speed-up | saved-memory reduction | max-batch ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["ratios"]:
        lines.append(
            f"| {r['scope']} | {r['image_size']} | {r['tokens']} | {r['train_speedup']:.2f}x | "
            f"{r['inference_speedup']:.2f}x | {100 * r['saved_memory_reduction']:.1f}% | {r['max_batch_ratio']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    from ..plots import plt, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for scope, style in (("block", "-"), ("model", "--")):
        for variant, color in (("softmax", "tab:red"), ("linear", "tab:blue")):
            rows = [r for r in result["rows"] if r["scope"] == scope and r["variant"] == variant]
            tokens = [r["tokens"] for r in rows]
            label = f"{variant} ({scope})"
            axes[0].loglog(tokens, [r["train_ms_per_image"] for r in rows], style, color=color, marker="o", label=label)
            axes[1].loglog(
                tokens,
                [r["saved_bytes_per_image"] / 2**20 for r in rows],
                style,
                color=color,
                marker="o",
                label=label,
            )
    axes[0].set(xlabel="tokens N = (size/32)^2", ylabel="fwd+bwd ms per image", title="time")
    axes[1].set(xlabel="tokens N = (size/32)^2", ylabel="saved activations MiB per image", title="memory")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    save_figure(fig, path)


def run_attention_benchmark(
    image_sizes=DEFAULT_SIZES,
    batch_size: int | None = None,
    device: str = "cpu",
    memory_budget_gb: float = 8.0,
    output: str | Path = "results/attention_benchmark",
    scopes=("block", "model"),
    repeats: int = 5,
    log=PRINT,
) -> dict:
    """Measure every (scope, size, variant); write ``<output>.json``, ``.md`` and ``.png``; return the result."""
    dev = torch.device(device)
    setup = Setup(dev, batch_size or (2 if dev.type == "cpu" else 16), memory_budget_gb, repeats=repeats)
    rows = []
    for size in image_sizes:
        for scope in scopes:
            for variant in ("softmax", "linear"):
                row = measure(variant, scope, size, setup)
                rows.append(row)
                log(
                    f"{scope:5} {size:>5}px N={row['tokens']:>5} {variant:7} "
                    f"fwd+bwd {row['train_ms_per_image']:8.2f} ms/img  "
                    f"infer {row['inference_images_per_s']:8.1f} img/s  "
                    f"saved {row['saved_bytes_per_image'] / 2**20:8.2f} MiB/img  max batch {row['max_batch_in_budget']}"
                )
    result = {
        "environment": environment(dev),
        "batch_size": setup.batch_size,
        "memory_budget_gb": memory_budget_gb,
        "repeats": repeats,
        "precision": "float32",
        "rows": rows,
        "ratios": ratios(rows),
    }
    write_json(f"{output}.json", result)
    with atomic_path(f"{output}.md") as tmp:
        tmp.write_text(markdown(result))
    plot(result, Path(f"{output}.png"))
    log(f"Wrote {output}.json, {output}.md and {output}.png")
    return result
