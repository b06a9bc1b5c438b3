"""The attention layers compute what their docstrings say."""

from __future__ import annotations

import pytest
import torch

from paddyclf.models import BoTNetBlock, BoTNetBlockLinear, CABlock, LinearMHSA, SoftmaxMHSA, linear_attention


def quadratic_linear_attention(q, k, v, eps):
    """The explicit O(N^2) form: out_i = sum_j (phi(q_i).phi(k_j)) v_j / (sum_j phi(q_i).phi(k_j) + eps)."""
    q, k = torch.relu(q), torch.relu(k)
    scores = torch.einsum("bhdi,bhdj->bhij", q, k)  # (B, h, N, N)
    return torch.einsum("bhij,bhdj->bhdi", scores, v) / (scores.sum(-1)[:, :, None, :] + eps)


@pytest.mark.parametrize("hw", [(7, 7), (10, 10), (8, 10), (3, 5), (1, 1)])
def test_linear_attention_equals_explicit_quadratic_formula(hw):
    gen = torch.Generator().manual_seed(0)
    n = hw[0] * hw[1]
    q, k, v = (torch.randn(2, 4, 9, n, generator=gen, dtype=torch.float64) for _ in range(3))
    # linear_attention computes in float32 by design; compare in float64 through the same math
    out = linear_attention(q.float(), k.float(), v.float()).double()
    ref = quadratic_linear_attention(q, k, v, 1e-6)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_linear_attention_float64_inputs_match_reference_closely():
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 6, 35, generator=gen, dtype=torch.float64) for _ in range(3))
    out = linear_attention(q, k, v)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, quadratic_linear_attention(q, k, v, 1e-6), rtol=1e-5, atol=1e-5)


def test_query_with_all_zero_phi_gives_finite_zero_output():
    q = -torch.rand(1, 2, 8, 16)  # ReLU(q) == 0 everywhere
    k, v = torch.randn(1, 2, 8, 16), torch.randn(1, 2, 8, 16)
    out = linear_attention(q, k, v)
    assert torch.isfinite(out).all()
    assert out.abs().max() == 0


def test_all_zero_phi_keys_give_finite_output():
    q, v = torch.randn(1, 2, 8, 16), torch.randn(1, 2, 8, 16)
    out = linear_attention(q, -torch.rand(1, 2, 8, 16), v)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("block", [BoTNetBlockLinear(), BoTNetBlock(), CABlock()])
def test_blocks_are_finite_under_bf16_autocast(block):
    x = torch.randn(2, 576, 7, 7) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block.eval()(x)
    assert out.shape == x.shape
    assert torch.isfinite(out.float()).all()


def test_linear_attention_accumulates_in_float32_under_autocast():
    q, k, v = (torch.randn(1, 2, 8, 49).bfloat16() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear_attention(q, k, v)
    ref = quadratic_linear_attention(q.double(), k.double(), v.double(), 1e-6)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("layer", [LinearMHSA(144, 4), SoftmaxMHSA(144, 4, (7, 7))])
@pytest.mark.parametrize("hw", [(7, 7), (10, 10), (8, 10), (3, 4)])
def test_attention_layers_accept_any_map_size(layer, hw):
    out = layer(torch.randn(1, 144, *hw))
    assert out.shape == (1, 144, *hw)
    assert torch.isfinite(out).all()


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="divide"):
        LinearMHSA(144, 5)


def test_new_bot_block_starts_as_identity_then_relu():
    block = BoTNetBlockLinear().eval()
    x = torch.randn(1, 576, 7, 7)
    torch.testing.assert_close(block(x), torch.relu(x))
