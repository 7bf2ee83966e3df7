"""A built GhostNet as a chain of blocks with canonical keys: what a latency table is made of.

A latency lookup table (FBNet, Once-for-All, nn-Meter) times every distinct
block once, on its own input shape, and predicts a network by summing its
blocks.  That needs two things from the search space, both here:

* `network_blocks(model)`: the chain stem -> 16 units -> head, each block
  an `nn.Module` with the input shape it sees in the network, so that
  `head(unit15(...unit0(stem(x))))` is the network's forward pass.  A unit is
  a Ghost bottleneck together with its MCA block when MCA is on: that pair
  is what one placement bit switches.
* a canonical `key` per block: equal keys <=> identical module on an
  identical input.  The key names the module's structure, not its position,
  so bottlenecks 12 and 14 of GhostNet (same channels, same map) share one
  entry, and MCA kernel sets that clip to the same kernels on a small map
  (at 2x2 every set becomes 3-3-3) share one too.

`menu_configs(space)` lists a few architectures whose blocks, together, are
every block the menu can produce: per ratio, the net without MCA and, per
kernel set, the net with MCA everywhere (a unit with MCA on depends only on
its position, ratio, width, d and the kernel set).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import N_BLOCKS, ArchConfig, format_kernels
from .ghostnet import GHOSTNET_LAYOUT, GhostNet, build_model
from .search_space import SearchSpace

KINDS = ("stem", "unit", "head")


class Head(nn.Module):
    """Everything after the last bottleneck: 1x1 conv, pooling, 1x1 conv, classifier."""

    def __init__(self, model: GhostNet) -> None:
        super().__init__()
        self.conv_last = model.conv_last
        self.pool, self.conv_head, self.act_head = model.pool, model.conv_head, model.act_head
        self.dropout, self.classifier = model.dropout, model.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_head(self.conv_head(self.pool(self.conv_last(x)))).flatten(1)
        return self.classifier(self.dropout(x))


@dataclass(frozen=True)
class Block:
    """One block of a network: its key, its module and the input it sees (without the batch axis)."""

    key: str
    kind: str  # "stem", "unit" or "head"
    index: int | None  # bottleneck position for units
    module: nn.Module
    input_shape: tuple[int, int, int]


def stem_key(resolution: int, out_channels: int, stride: int) -> str:
    return f"stem|res={resolution}|in=3|out={out_channels}|stride={stride}"


def unit_key(info: dict, in_resolution: int, ratio: int, dw_size: int) -> str:
    """Key of bottleneck `info` (a `blocks_info` row) plus its MCA block, if any."""
    spec = GHOSTNET_LAYOUT[info["index"]]
    mca = format_kernels(info["kernels_used"]) if info["mca"] else "-"
    return (f"unit|res={in_resolution}|in={info['in_channels']}|exp={info['expansion']}"
            f"|out={info['out_channels']}|k={info['kernel']}|stride={info['stride']}|se={spec.se_ratio:g}"
            f"|s={ratio}|d={dw_size}|mca={mca}")


def head_key(resolution: int, in_channels: int, last_channels: int, head_channels: int, classes: int) -> str:
    return f"head|res={resolution}|in={in_channels}|last={last_channels}|feat={head_channels}|classes={classes}"


def network_blocks(model: GhostNet) -> list[Block]:
    """stem, the 16 units and the head of `model`, in forward order, with keys and input shapes."""
    if not isinstance(model, GhostNet):
        raise ValueError(f"network_blocks needs a GhostNet; got {type(model).__name__}")
    config = model.config
    size = model.input_size
    stem_out = model.blocks_info[0]["in_channels"]
    blocks = [Block(stem_key(size, stem_out, model.stem_stride), "stem", None, model.stem, (3, size, size))]
    resolution = model.stem_resolution
    for info, unit in zip(model.blocks_info, model.blocks):
        key = unit_key(info, resolution, config.ratio, config.dw_size)
        blocks.append(Block(key, "unit", info["index"], unit, (info["in_channels"], resolution, resolution)))
        resolution = info["resolution"]
    last = model.conv_last[0].out_channels  # ConvBnAct: conv, BN, ReLU
    in_channels = model.blocks_info[-1]["out_channels"]
    key = head_key(resolution, in_channels, last, model.num_features, model.num_classes)
    blocks.append(Block(key, "head", None, Head(model), (in_channels, resolution, resolution)))
    return blocks


def block_keys(config: ArchConfig, input_size: int = 32, num_classes: int = 10) -> list[str]:
    """The keys of `config`'s blocks in forward order (stem, 16 units, head)."""
    return [b.key for b in network_blocks(build_model(config, num_classes=num_classes, input_size=input_size))]


def menu_configs(space: SearchSpace) -> list[ArchConfig]:
    """Architectures whose blocks together are every block `space` can produce."""
    configs = []
    for ratio in space.ratios:
        common = dict(ratio=ratio, width=space.width, dw_size=space.dw_size)
        configs.append(ArchConfig(mca=(False,) * N_BLOCKS, kernels=space.kernel_sets[0], **common))
        configs.extend(ArchConfig(mca=(True,) * N_BLOCKS, kernels=kernels, **common)
                       for kernels in space.kernel_sets)
    return configs
