"""Ghost module and Ghost bottleneck (GhostNet, Han et al. 2020, eq. 1-5).

Conventions follow the official GhostNet implementation, because the paper's
parameter / FLOP figures (5.2 M, 141 M at width 1.0) come from it: channel
counts divisible by 4, SE with hard-sigmoid gate on reduced channels
make_divisible(c/4, 4), and a depthwise + pointwise conv shortcut whenever
channels or stride change.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F


def make_divisible(value: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never losing more than 10 %."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """relu6(x + 3) / 6: GhostNet's SE gate (cheaper than a sigmoid on mobile)."""
    return F.relu6(x + 3.0) / 6.0


class ConvBnAct(nn.Sequential):
    """k x k conv (no bias) + BN + optional ReLU, 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1, relu: bool = True) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True) if relu else nn.Identity(),
        )


class SqueezeExcite(nn.Module):
    """Channel gating: pool -> 1x1 reduce -> ReLU -> 1x1 expand -> hard sigmoid."""

    def __init__(self, channels: int, se_ratio: float = 0.25, divisor: int = 4) -> None:
        super().__init__()
        reduced = make_divisible(channels * se_ratio, divisor)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean((2, 3), keepdim=True)
        gate = self.conv_expand(self.act(self.conv_reduce(gate)))
        return x * hard_sigmoid(gate)


class GhostModule(nn.Module):
    """n output maps from m = ceil(n/s) 'intrinsic' maps plus cheap ghosts.

    A primary k x k conv makes the m intrinsic maps; a d x d depthwise conv
    makes s-1 ghost maps from each of them (m(s-1) maps); both are
    concatenated and cut to n.  With s = 1 there are no ghosts and the module
    is exactly a plain conv + BN (+ ReLU): the "CNN" baseline.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, ratio: int = 2,
                 dw_size: int = 3, stride: int = 1, relu: bool = True) -> None:
        super().__init__()
        if ratio < 1:
            raise ValueError(f"GhostModule ratio must be >= 1; got {ratio}")
        self.out_channels = out_channels
        self.ratio = ratio
        init_channels = math.ceil(out_channels / ratio)
        ghost_channels = init_channels * (ratio - 1)
        self.primary_conv = ConvBnAct(in_channels, init_channels, kernel_size, stride, relu=relu)
        self.cheap_operation = (
            ConvBnAct(init_channels, ghost_channels, dw_size, 1, groups=init_channels, relu=relu)
            if ratio > 1 else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ghost_maps(self.primary_conv(x), self.cheap_operation, self.out_channels)


def ghost_maps(intrinsic: torch.Tensor, cheap: nn.Module | None, out_channels: int) -> torch.Tensor:
    """Paper eq. 3–5: the intrinsic maps, their cheap ghosts concatenated, cut to n channels."""
    if cheap is None:
        return intrinsic
    return torch.cat([intrinsic, cheap(intrinsic)], dim=1)[:, :out_channels]


class GhostBottleneck(nn.Module):
    """Ghost module (expand, ReLU) -> [depthwise stride conv + BN] -> [SE] -> Ghost module (project).

    The residual is the identity when shape is kept, else a depthwise k x k
    (stride) conv + BN followed by a 1x1 conv + BN, as in the official code.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, dw_kernel_size: int = 3,
                 stride: int = 1, se_ratio: float = 0.0, ratio: int = 2, dw_size: int = 3) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"GhostBottleneck stride must be 1 or 2; got {stride}")
        self.stride = stride
        self.ghost1 = GhostModule(in_channels, mid_channels, ratio=ratio, dw_size=dw_size, relu=True)
        self.conv_dw: nn.Module | None = None
        if stride > 1:
            self.conv_dw = nn.Sequential(
                nn.Conv2d(mid_channels, mid_channels, dw_kernel_size, stride, dw_kernel_size // 2,
                          groups=mid_channels, bias=False),
                nn.BatchNorm2d(mid_channels),
            )
        self.se = SqueezeExcite(mid_channels, se_ratio) if se_ratio and se_ratio > 0 else None
        self.ghost2 = GhostModule(mid_channels, out_channels, ratio=ratio, dw_size=dw_size, relu=False)
        if in_channels == out_channels and stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, dw_kernel_size, stride, dw_kernel_size // 2,
                          groups=in_channels, bias=False),
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost1(x)
        if self.conv_dw is not None:
            y = self.conv_dw(y)
        if self.se is not None:
            y = self.se(y)
        return self.ghost2(y) + self.shortcut(x)
