"""Attention memory scaling (exact, via saved-tensor hooks) and the benchmark command end to end."""

from __future__ import annotations

import json

import torch

from paddyclf.benchmarks.common import saved_tensor_bytes
from paddyclf.cli import main
from paddyclf.models import BoTNetBlock, BoTNetBlockLinear


def saved_bytes(block_cls, side: int, **kw) -> int:
    block = block_cls(576, 4, **kw).train()
    return saved_tensor_bytes(block, torch.randn(1, 576, side, side))


def test_linear_block_activation_memory_grows_linearly_with_tokens():
    small, large, huge = (saved_bytes(BoTNetBlockLinear, s) for s in (14, 28, 56))
    assert large / small <= 4.5  # 4x tokens
    assert huge / small <= 4.5 * 4  # 16x tokens


def test_softmax_block_activation_memory_grows_quadratically_with_tokens():
    small = saved_bytes(BoTNetBlock, 14, feature_size=(14, 14))
    large = saved_bytes(BoTNetBlock, 28, feature_size=(28, 28))
    huge = saved_bytes(BoTNetBlock, 56, feature_size=(56, 56))
    assert large / small >= 6  # 4x tokens: already well above linear
    assert huge / small >= 40  # 16x tokens; the N x N logits and probabilities dominate


def test_linear_block_saves_less_than_softmax_at_large_maps():
    assert saved_bytes(BoTNetBlockLinear, 32) < 0.5 * saved_bytes(BoTNetBlock, 32, feature_size=(32, 32))


def test_benchmark_command_writes_json_markdown_and_plot(tmp_path, capsys):
    out = tmp_path / "bench"
    assert (
        main(
            [
                "benchmark",
                "attention",
                "--image-sizes",
                "64",
                "128",
                "--batch-size",
                "1",
                "--repeats",
                "1",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "bench.json").read_text())
    assert len(result["rows"]) == 2 * 2 * 2  # sizes x scopes x variants
    row = result["rows"][0]
    for key in (
        "tokens",
        "head_dim",
        "train_ms_per_image",
        "inference_images_per_s",
        "saved_bytes_per_image",
        "max_batch_in_budget",
        "attention_cost_theory",
    ):
        assert key in row
    assert {r["tokens"] for r in result["rows"]} == {4, 16}
    assert "| block | 64 |" in (tmp_path / "bench.md").read_text()
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    assert "block    64px" in capsys.readouterr().out  # each row is printed as it is measured
