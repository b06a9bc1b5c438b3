"""The project's own attention layers: linear MHSA, softmax MHSA (BoTNet) and coordinate attention.

All layers take and return NCHW feature maps, so they drop into a CNN without reshaping glue.
Notation: B batch, C channels, H x W the map, N = H*W tokens, h heads, d = C / h the head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def check_heads(dim: int, heads: int) -> int:
    """Return the head dim ``dim // heads``; raise ValueError when ``heads`` does not divide ``dim``."""
    if heads < 1 or dim % heads:
        raise ValueError(f"--heads {heads} must be >= 1 and divide the attention width {dim}")
    return dim // heads


def split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 3C, H, W) with channel blocks [Q | K | V] -> three (B, heads, d, N) views.

    Tokens stay on the last axis (channel-major, as the conv wrote them): no permute, no copy.
    """
    b, c3, h, w = qkv.shape
    return qkv.reshape(b, 3, heads, c3 // (3 * heads), h * w).unbind(1)


class LinearMHSA(nn.Module):
    """Multi-head linear attention with ReLU kernels and a locally-enhanced position encoding.

    For each head, with phi = ReLU::

        out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i)^T sum_j phi(k_j) + eps)

    which is computed right-to-left, ``phi(Q) (phi(K)^T V)``, in O(N d^2): no N x N tensor exists.
    The numerator and the normaliser come out of one matmul by appending a row of ones to V
    (as EfficientViT's LiteMLA does). The whole product runs in float32 even under autocast:
    the sums over N overflow/underflow in fp16 and lose precision in bf16.

    Position information is LePE (CSWin Transformer): a depthwise 3x3 conv of V added to the
    output. It is relative (translation-equivariant), O(N), and works for any H x W, including
    sizes never seen in training.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, dim: int, heads: int = 4, eps: float = 1e-6) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = check_heads(dim, heads)
        self.eps = eps
        self.qkv = nn.Conv2d(dim, 3 * dim, kernel_size=1, bias=False)
        self.pos = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)  # LePE on V

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(x)  # (B, 3C, H, W), channel blocks [Q | K | V]
        q, k, v = split_heads(qkv, self.heads)
        attended = linear_attention(q, k, v, self.eps).reshape(b, c, h, w)
        return attended + self.pos(qkv[:, 2 * c :])  # V as a map again: a slice, no copy


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """ReLU-kernel linear attention on channel-major tokens.

    Args:
        q, k, v: (B, heads, d, N).
    Returns:
        (B, heads, d, N) in the input dtype:
        ``out[:, :, :, i] = V phi(K)^T phi(q_i) / (1^T phi(K)^T phi(q_i) + eps)``.

    A query whose phi is all zero gets numerator 0 and normaliser eps, so its output is 0, not NaN.
    """
    dtype = q.dtype
    with torch.autocast(device_type=q.device.type, enabled=False):
        q, k, v = F.relu(q.float()), F.relu(k.float()), v.float()
        v = F.pad(v, (0, 0, 0, 1), value=1.0)  # (B, h, d+1, N): the ones row yields the normaliser
        kv = torch.matmul(v, k.transpose(-1, -2))  # (B, h, d+1, d) = V_pad phi(K)^T
        out = torch.matmul(kv, q)  # (B, h, d+1, N)
        out = out[:, :, :-1] / (out[:, :, -1:] + eps)
    return out.to(dtype)


class SoftmaxMHSA(nn.Module):
    """BoTNet multi-head self-attention: softmax(q^T k + q^T r) with 2-D position embeddings.

    ``r = rel_h + rel_w`` is a per-head (d, H, W) table factorised into a height part (d, H, 1)
    and a width part (d, 1, W), as in the BoTNet reference MHSA. The tables are sized for
    ``feature_size`` (the map of the training image size); for any other H x W they are
    resized bilinearly, so other input sizes work (with interpolated positions).

    Cost is O(N^2 d) time and O(N^2) memory per head: the N x N logits are materialised.
    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, dim: int, heads: int = 4, feature_size: tuple[int, int] = (7, 7)) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = check_heads(dim, heads)
        self.scale = self.head_dim**-0.5
        fh, fw = feature_size
        self.qkv = nn.Conv2d(dim, 3 * dim, kernel_size=1, bias=False)
        self.rel_h = nn.Parameter(torch.randn(heads, self.head_dim, fh, 1) * self.scale)
        self.rel_w = nn.Parameter(torch.randn(heads, self.head_dim, 1, fw) * self.scale)

    def position_table(self, h: int, w: int) -> torch.Tensor:
        """(heads, d, N) position embeddings for an h x w map, resized when it differs from training."""
        rel_h, rel_w = self.rel_h, self.rel_w
        if rel_h.shape[2] != h:
            rel_h = F.interpolate(rel_h, size=(h, 1), mode="bilinear", align_corners=False)
        if rel_w.shape[3] != w:
            rel_w = F.interpolate(rel_w, size=(1, w), mode="bilinear", align_corners=False)
        return (rel_h + rel_w).reshape(self.heads, self.head_dim, h * w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = split_heads(self.qkv(x), self.heads)
        keys = k + self.position_table(h, w).to(k.dtype)  # q^T k + q^T r = q^T (k + r)
        logits = torch.matmul(q.transpose(-1, -2), keys) * self.scale  # (B, h, N, N)
        attn = logits.softmax(dim=-1)
        out = torch.matmul(v, attn.transpose(-1, -2))  # (B, h, d, N)
        return out.reshape(b, c, h, w)


class CoordinateAttention(nn.Module):
    """Coordinate attention (Hou et al., CVPR 2021).

    Pools along W and along H, mixes the two direction-aware descriptors with a shared 1x1 conv
    (width ``max(8, C // reduction)``), and gates the input with one sigmoid map per direction::

        y = x * sigmoid(a_h)[..., :, None] * sigmoid(a_w)[..., None, :]

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, dim: int, reduction: int = 32) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"--reduction must be >= 1, got {reduction}")
        mid = max(8, dim // reduction)
        self.mix = nn.Sequential(nn.Conv2d(dim, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.Hardswish())
        self.gate_h = nn.Conv2d(mid, dim, 1)
        self.gate_w = nn.Conv2d(mid, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        pooled_h = x.mean(dim=3, keepdim=True)  # (B, C, H, 1)
        pooled_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        mixed = self.mix(torch.cat([pooled_h, pooled_w], dim=2))
        mixed_h, mixed_w = mixed.split([h, w], dim=2)
        return x * self.gate_h(mixed_h).sigmoid() * self.gate_w(mixed_w.transpose(2, 3)).sigmoid()
