"""Bottleneck-Transformer (BoT) blocks and the coordinate-attention block.

A BoT block is a ResNet bottleneck whose 3x3 conv is replaced by multi-head self-attention
(Srinivas et al., "Bottleneck Transformers for Visual Recognition", 2021)::

    x -> 1x1 conv C->C/4, BN, ReLU -> MHSA -> BN, ReLU -> 1x1 conv C/4->C, BN -> + x -> ReLU

The two variants differ only in the MHSA: softmax (``BoTNetBlock``) or linear (``BoTNetBlockLinear``).
"""

from __future__ import annotations

from torch import nn

from .attention import CoordinateAttention, LinearMHSA, SoftmaxMHSA


def conv_bn(in_ch: int, out_ch: int, act: bool = True) -> nn.Sequential:
    """1x1 conv + BatchNorm (+ ReLU)."""
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BoTBottleneck(nn.Module):
    """Residual bottleneck around an attention layer. Shapes: (B, C, H, W) -> (B, C, H, W).

    The last BatchNorm starts at zero (as in timm's ``zero_init_last``), so a freshly added
    block is the identity (up to the final ReLU) and does not disturb a pretrained backbone.
    """

    def __init__(self, dim: int, attention: nn.Module, mid_dim: int) -> None:
        super().__init__()
        self.reduce = conv_bn(dim, mid_dim)
        self.attention = attention
        self.post_attention = nn.Sequential(nn.BatchNorm2d(mid_dim), nn.ReLU(inplace=True))
        self.expand = conv_bn(mid_dim, dim, act=False)
        nn.init.zeros_(self.expand[1].weight)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.expand(self.post_attention(self.attention(self.reduce(x))))
        return self.act(out + x)


class BoTNetBlockLinear(BoTBottleneck):
    """BoT block with ReLU-kernel linear attention (O(N) in tokens); see :class:`LinearMHSA`."""

    def __init__(self, dim: int = 576, heads: int = 4, bottleneck_ratio: int = 4) -> None:
        mid = dim // bottleneck_ratio
        super().__init__(dim, LinearMHSA(mid, heads), mid)


class BoTNetBlock(BoTBottleneck):
    """BoT block with softmax attention and 2-D position tables (O(N^2)); see :class:`SoftmaxMHSA`.

    ``feature_size`` is the (H, W) of the map the tables are sized for: image_size // 32.
    """

    def __init__(
        self,
        dim: int = 576,
        heads: int = 4,
        feature_size: tuple[int, int] = (7, 7),
        bottleneck_ratio: int = 4,
    ) -> None:
        mid = dim // bottleneck_ratio
        super().__init__(dim, SoftmaxMHSA(mid, heads, feature_size), mid)


class CABlock(nn.Module):
    """Coordinate attention with a residual connection. Shapes: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, dim: int = 576, reduction: int = 32) -> None:
        super().__init__()
        self.attention = CoordinateAttention(dim, reduction)

    def forward(self, x):
        return x + self.attention(x)
