"""GhostNet built from an `ArchConfig`: the paper's Table 1 as data, plus MCA.

The 16-bottleneck layout is a tuple of `BlockSpec`s, so describe, cost
reports and the builder all read the same table.  An `ArchConfig` chooses
the ghost ratio, width, cheap-op kernel and after which bottlenecks an MCA
block sits; the builder needs the input resolution because MCA kernels are
clipped to the feature maps they will see.  `space.build_model` (in
`space.backbones`) dispatches here for `backbone="ghostnet"`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import N_BLOCKS, ArchConfig
from .ghost import ConvBnAct, GhostBottleneck, make_divisible
from .mca import MCA
from .unit import Unit, UnitNet


@dataclass(frozen=True)
class BlockSpec:
    """One row of GhostNet Table 1: dw kernel, expansion (#exp), out channels, SE ratio, stride."""

    kernel: int
    expansion: int
    out_channels: int
    se_ratio: float
    stride: int


GHOSTNET_LAYOUT: tuple[BlockSpec, ...] = (
    BlockSpec(3, 16, 16, 0.0, 1),
    BlockSpec(3, 48, 24, 0.0, 2),
    BlockSpec(3, 72, 24, 0.0, 1),
    BlockSpec(5, 72, 40, 0.25, 2),
    BlockSpec(5, 120, 40, 0.25, 1),
    BlockSpec(3, 240, 80, 0.0, 2),
    BlockSpec(3, 200, 80, 0.0, 1),
    BlockSpec(3, 184, 80, 0.0, 1),
    BlockSpec(3, 184, 80, 0.0, 1),
    BlockSpec(3, 480, 112, 0.25, 1),
    BlockSpec(3, 672, 112, 0.25, 1),
    BlockSpec(5, 672, 160, 0.25, 2),
    BlockSpec(5, 960, 160, 0.0, 1),
    BlockSpec(5, 960, 160, 0.25, 1),
    BlockSpec(5, 960, 160, 0.0, 1),
    BlockSpec(5, 960, 160, 0.25, 1),
)
assert len(GHOSTNET_LAYOUT) == N_BLOCKS

STEM_CHANNELS = 16
LAST_CHANNELS = 960   # 1x1 conv after the last bottleneck (scaled by width)
HEAD_CHANNELS = 1280  # 1x1 conv after global pooling (not scaled, as in the paper)
CHANNEL_DIVISOR = 4


class GhostNet(UnitNet):
    """stem -> 16 Ghost units -> 1x1 conv (960) -> pool -> 1x1 conv (1280) -> dropout -> linear.

    `blocks_info` lists, per bottleneck, what describe and the search report
    show: index, output resolution, channels, expansion, stride, SE, MCA and
    the MCA kernels actually used after clipping.
    """

    stem_kernel = 3
    head_kernel = 1

    def __init__(self, config: ArchConfig, num_classes: int = 10, input_size: int = 32, stem_stride: int = 1,
                 dropout: float = 0.2, mca_dropout: float = 0.0) -> None:
        if config.backbone != "ghostnet":
            raise ValueError(f"GhostNet needs a ghostnet ArchConfig; got backbone {config.backbone!r}")
        super().__init__(config, num_classes, input_size)
        self.stem_stride = stem_stride
        width = config.width

        stem_channels = make_divisible(STEM_CHANNELS * width, CHANNEL_DIVISOR)
        self.stem = ConvBnAct(3, stem_channels, 3, stem_stride)
        resolution = math.ceil(input_size / stem_stride)
        self.stem_resolution = resolution

        units: list[Unit] = []
        info: list[dict[str, Any]] = []
        in_channels = stem_channels
        for index, spec in enumerate(GHOSTNET_LAYOUT):
            out_channels = make_divisible(spec.out_channels * width, CHANNEL_DIVISOR)
            mid_channels = make_divisible(spec.expansion * width, CHANNEL_DIVISOR)
            resolution = math.ceil(resolution / spec.stride)
            bottleneck = GhostBottleneck(in_channels, mid_channels, out_channels, spec.kernel, spec.stride,
                                         spec.se_ratio, ratio=config.ratio, dw_size=config.dw_size)
            mca = (MCA(out_channels, config.kernels, feature_size=resolution, dropout=mca_dropout)
                   if config.mca[index] else None)
            units.append(Unit(bottleneck, mca))  # the MCA built here: the seeded init order of every release
            info.append(_unit_info(index, spec, resolution, in_channels, out_channels, mid_channels, mca))
            in_channels = out_channels
        self.blocks = nn.Sequential(*units)
        self.blocks_info = info
        self.final_resolution = resolution

        last_channels = make_divisible(LAST_CHANNELS * width, CHANNEL_DIVISOR)
        self.conv_last = ConvBnAct(in_channels, last_channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(last_channels, HEAD_CHANNELS, 1, bias=True)
        self.act_head = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)
        self.num_features = HEAD_CHANNELS

        # Checkpoints written before GhostNet was a UnitNet name a unit's bottleneck `bottleneck`.
        self.register_load_state_dict_pre_hook(_rename_old_units)

    @property
    def head(self) -> nn.Module:
        """Everything after the last bottleneck as one module (the latency table times it as a block)."""
        return GhostNetHead(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the last 1x1 conv (N, 960*width, H/16 or H/32, ...)."""
        return self.conv_last(self.blocks(self.stem(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_head(self.conv_head(self.pool(x))).flatten(1)
        return self.classifier(self.dropout(x))

    def unit_key_fields(self, info: dict[str, Any]) -> str:
        """Expansion, depthwise kernel and SE ratio: the Table 1 columns that make two bottlenecks differ."""
        return f"|exp={info['expansion']}|k={info['kernel']}|se={GHOSTNET_LAYOUT[info['index']].se_ratio:g}"


class GhostNetHead(nn.Module):
    """GhostNet after its last bottleneck: 1x1 conv, pooling, 1x1 conv, classifier (the model's own layers)."""

    def __init__(self, model: GhostNet) -> None:
        super().__init__()
        self.conv_last = model.conv_last
        self.pool, self.conv_head, self.act_head = model.pool, model.conv_head, model.act_head
        self.dropout, self.classifier = model.dropout, model.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_head(self.conv_head(self.pool(self.conv_last(x)))).flatten(1)
        return self.classifier(self.dropout(x))


def _rename_old_units(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    old = re.compile(rf"^{re.escape(prefix)}blocks\.(\d+)\.bottleneck\.")
    for key in [k for k in state_dict if old.match(k)]:
        state_dict[old.sub(rf"{prefix}blocks.\1.block.", key)] = state_dict.pop(key)


def _unit_info(index: int, spec: BlockSpec, resolution: int, in_channels: int, out_channels: int,
               mid_channels: int, mca: MCA | None) -> dict[str, Any]:
    """One `blocks_info` row: what describe and the search report show of a bottleneck."""
    return {"index": index, "resolution": resolution, "in_channels": in_channels, "out_channels": out_channels,
            "expansion": mid_channels, "kernel": spec.kernel, "stride": spec.stride, "se": spec.se_ratio > 0,
            "mca": mca is not None, "kernels_used": mca.kernels_used if mca is not None else (),
            "heads": mca.heads if mca is not None else None}


def build_ghostnet(config: ArchConfig, num_classes: int = 10, input_size: int = 32,
                   stem_stride: int | None = None, dropout: float = 0.2, mca_dropout: float = 0.0) -> GhostNet:
    """The GhostNet for `config` (`space.build_model` validates the common arguments and dispatches here).

    `stem_stride` defaults to 1 for CIFAR-sized inputs (<= 64 px, so a 32^2
    image ends on a 2x2 map) and 2 for ImageNet-sized ones, as in the paper.
    """
    if stem_stride is None:
        stem_stride = 1 if input_size <= 64 else 2
    if stem_stride not in (1, 2) or isinstance(stem_stride, bool):
        raise ValueError(f"stem_stride must be 1, 2 or None (auto); got {stem_stride!r}")
    return GhostNet(config, num_classes, input_size, stem_stride, dropout, mca_dropout)
