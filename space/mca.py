"""Multi-scale Convolutional Attention (MCA), inserted after a Ghost bottleneck.

For an input F with C channels on an H x W map:

1. L = DWConv_{5x5}(F): local context;
2. M = L + sum_k DWConv_{k x 1}(DWConv_{1 x k}(L)) for every kernel scale k:
   strip convolutions see k pixels along each axis for O(k) instead of O(k^2)
   cost, so large scales (11, 21) stay affordable;
3. q, k, v = 1x1 convs of M (one fused C -> 3C conv);
4. per head, attention = softmax(q_hat k_hat^T * temperature) over *channels*
   (C/h x C/h per head), with q and k L2-normalised over pixels and a
   learned temperature per head.  This transposed attention costs
   2 * C^2 / h * H * W MACs, linear in the number of pixels, which keeps it
   usable at 32^2 and 224^2 alike;
5. out = F + Dropout(Conv1x1(attention v)).

Kernels larger than the map are clipped to the largest odd size <= 2*H - 1
(a larger 'same' kernel only multiplies zero padding), so small late-stage
maps do not pay for taps that can never touch a pixel.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

LOCAL_KERNEL = 5
MIN_HEAD_DIM = 16
HEAD_CHOICES = (8, 4, 2, 1)


def clip_kernel(kernel: int, size: int) -> int:
    """Largest odd kernel <= `kernel` that a `size`-pixel axis can use (<= 2*size - 1)."""
    if kernel < 1 or size < 1:
        raise ValueError(f"kernel and size must be >= 1; got kernel={kernel}, size={size}")
    limit = 2 * size - 1
    return kernel if kernel <= limit else limit


def num_heads(channels: int) -> int:
    """Heads for `channels`: the most of 8, 4, 2, 1 that divide C with >= 16 channels per head.

    Channel attention compares channels within a head, so a head needs
    enough channels to have something to choose between; at GhostNet width
    1.0 this gives 1 head for 16 and 24 channels, 2 for 40, 4 for 80 and 112,
    8 for 160.
    """
    for heads in HEAD_CHOICES[:-1]:
        if channels % heads == 0 and channels // heads >= MIN_HEAD_DIM:
            return heads
    return 1


class StripConv(nn.Sequential):
    """Depthwise 1 x k then k x 1: a k x k receptive field at O(k) cost."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__(
            nn.Conv2d(channels, channels, (1, kernel), padding=(0, kernel // 2), groups=channels),
            nn.Conv2d(channels, channels, (kernel, 1), padding=(kernel // 2, 0), groups=channels),
        )


class MCA(nn.Module):
    """Multi-scale conv + channel self-attention block, same channels in and out.

    `feature_size` is the side of the map the block will see; it decides the
    clipped kernels (`kernels_used`), so the model must be built for its
    input resolution.  Running on a larger map still works (only the
    clipping would have been looser).
    """

    def __init__(self, channels: int, kernels: tuple[int, ...] = (3, 5, 7), feature_size: int | None = None,
                 heads: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if not kernels:
            raise ValueError("MCA needs at least one kernel scale")
        self.channels = channels
        self.heads = num_heads(channels) if heads is None else heads
        if channels % self.heads:
            raise ValueError(f"MCA heads={self.heads} must divide channels={channels}")
        clip = (lambda k: clip_kernel(k, feature_size)) if feature_size else (lambda k: k)
        self.local_kernel = clip(LOCAL_KERNEL)
        self.kernels_used = tuple(clip(k) for k in kernels)
        self.local = nn.Conv2d(channels, channels, self.local_kernel, padding=self.local_kernel // 2,
                               groups=channels)
        self.strips = nn.ModuleList(StripConv(channels, k) for k in self.kernels_used)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.temperature = nn.Parameter(torch.ones(self.heads, 1, 1))
        self.proj = nn.Conv2d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        local = self.local(x)
        multi = local
        for strip in self.strips:
            multi = multi + strip(local)
        q, k, v = self.qkv(multi).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature  # (b, heads, c/h, c/h)
        out = attn.softmax(dim=-1) @ v
        out = self.proj(out.reshape(b, c, h, w))
        return x + self.drop(out)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, heads={self.heads}, kernels_used={self.kernels_used}"
