"""What every backbone shares: units with an MCA slot, the Ghost rule, the trunk/head split.

A backbone is stem -> units -> head.  A *unit* is one MCA insertion point:
a block of the original network (a VGG conv + BN + ReLU, a ResNet residual
block) optionally followed by an MCA block.  Keeping that shape common lets
`space.describe`, the cost reports and the latency table read every backbone
the same way (`stem`, `blocks`, `blocks_info`, `head`).  GhostNet builds its
Ghost bottlenecks itself (its layout is Ghost already) and so skips `finish`.

Ghost modules enter through `ghostify`, *before* the MCA blocks are placed:
MCA's own 1x1 convs (q, k, v, projection) are attention, not the convs the
Ghost paper replaces, and must stay dense.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import ArchConfig
from .ghostify import Keep, ghostify, keep_stem_and_grouped
from .mca import MCA


@dataclass(frozen=True)
class GhostRule:
    """Which layers of a backbone become Ghost modules when ratio > 1 (see `ghostify`).

    `keep` protects layers (by dotted name / layer); `linear` ghosts the
    classifier's Linear layers as well.  Each backbone states its rule next
    to the paper figures it reproduces.
    """

    keep: Keep = keep_stem_and_grouped
    linear: bool = False


class Unit(nn.Module):
    """One insertion point: a block of the backbone, then an optional MCA block (one row of describe)."""

    def __init__(self, block: nn.Module, mca: MCA | None = None) -> None:
        super().__init__()
        self.block = block
        self.mca = mca

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(x)
        return x if self.mca is None else self.mca(x)


class UnitNet(nn.Module):
    """stem -> units -> head, with the attributes describe and the cost count read.

    Subclasses set `stem`, `blocks` (an nn.Sequential of `Unit`s), `head`,
    `blocks_info` (one dict per unit: index, resolution, in/out channels,
    expansion, kernel, stride, se), `stem_resolution`, `stem_stride`,
    `stem_kernel`, `final_resolution`, then call `finish`.  `input_size` is
    what `count_macs(model)` counts at by default.
    """

    stem_kernel: int | None = None  # None: describe shows '-'
    head_kernel: int | None = None

    def __init__(self, config: ArchConfig, num_classes: int, input_size: int) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.input_size = input_size

    def finish(self, rule: GhostRule, mca_dropout: float) -> None:
        """Ghost the trunk and head per `rule` (ratio > 1), then place the MCA blocks the config asks for."""
        config = self.config
        ghostify(self, config.ratio, config.dw_size, keep=rule.keep, linear=rule.linear)
        # He init for every trunk conv (ghost ones included), as torchvision's ResNets do; before the
        # MCA blocks exist, so they keep the initialisation they share with GhostNet's.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        for info, unit in zip(self.blocks_info, self.blocks):
            mca = (MCA(info["out_channels"], config.kernels, feature_size=info["resolution"], dropout=mca_dropout)
                   if config.mca[info["index"]] else None)
            unit.mca = mca
            info.update(mca=mca is not None, kernels_used=mca.kernels_used if mca is not None else (),
                        heads=mca.heads if mca is not None else None)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def mca_modules(self) -> list[MCA]:
        return [unit.mca for unit in self.blocks if unit.mca is not None]

    def unit_key_fields(self, info: dict[str, Any]) -> str:
        """What a latency-table key adds to a unit's shape and digest for this backbone (`space.blocks`)."""
        return ""


def block_info(index: int, resolution: int, in_channels: int, out_channels: int, stride: int,
               kernel: int = 3, expansion: int | None = None) -> dict[str, Any]:
    """One `blocks_info` row (MCA fields are filled in by `UnitNet.finish`)."""
    return {"index": index, "resolution": resolution, "in_channels": in_channels, "out_channels": out_channels,
            "expansion": expansion, "kernel": kernel, "stride": stride, "se": False,
            "mca": False, "kernels_used": (), "heads": None}
