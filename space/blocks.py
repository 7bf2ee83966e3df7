"""A built network as a chain of blocks with canonical keys: what a latency table is made of.

A latency lookup table (FBNet, Once-for-All, nn-Meter) times every distinct
block once, on its own input shape, and predicts a network by summing its
blocks.  That needs two things from the search space, both here:

* `network_blocks(model)`: the chain stem -> units -> head, each block an
  `nn.Module` with the input shape it sees in the network, so that
  `head(unit_n(...unit_0(stem(x))))` is the network's forward pass.  A unit
  is one MCA insertion point — a GhostNet bottleneck, a VGG conv, a ResNet
  block — together with its MCA block when MCA is on: that pair is what one
  placement bit switches.
* a canonical `key` per block: equal keys <=> identical module on an
  identical input.  The key names the block's structure, not its position
  (so GhostNet's bottlenecks 12 and 14 share one entry, and MCA kernel sets
  that clip to the same kernels on a small map — at 2x2 every set becomes
  3-3-3 — share one too), and ends with a digest of the module's `repr`,
  which spells out every layer's hyper-parameters: a change to a block's
  code changes its key, so a table measured before the change reports the
  block as missing instead of predicting from a stale number.

`menu_configs(space)` lists a few architectures whose blocks, together, are
every block the menu can produce: per ratio, the net without MCA and, per
kernel set, the net with MCA everywhere (a unit with MCA on depends only on
its position, ratio, width, d and the kernel set).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from torch import nn

from .backbones import build_model
from .config import DEFAULT_BACKBONE, ArchConfig, format_kernels
from .search_space import SearchSpace
from .unit import UnitNet

KINDS = ("stem", "unit", "head")


@dataclass(frozen=True)
class Block:
    """One block of a network: its key, its module and the input it sees (without the batch axis)."""

    key: str
    kind: str  # "stem", "unit" or "head"
    index: int | None  # insertion point for units
    module: nn.Module
    input_shape: tuple[int, int, int]


def structure_digest(module: nn.Module) -> str:
    """10 hex digits of the module's repr: every layer and its hyper-parameters, no weights."""
    return hashlib.sha1(repr(module).encode()).hexdigest()[:10]


def _net(config: ArchConfig) -> str:
    return "" if config.backbone == DEFAULT_BACKBONE else f"|net={config.backbone}"


def _unit_key(model: UnitNet, info: dict, in_resolution: int, module: nn.Module) -> str:
    config = model.config
    mca = format_kernels(info["kernels_used"]) if info["mca"] else "-"
    extra = model.unit_key_fields(info)
    return (f"unit{_net(config)}|res={in_resolution}|in={info['in_channels']}|out={info['out_channels']}{extra}"
            f"|stride={info['stride']}|s={config.ratio}|d={config.dw_size}|mca={mca}#{structure_digest(module)}")


def network_blocks(model: nn.Module) -> list[Block]:
    """stem, the units and the head of `model`, in forward order, with keys and input shapes."""
    if not isinstance(model, UnitNet):
        raise ValueError(f"network_blocks needs a UnitNet backbone (space.build_model); got {type(model).__name__}")
    config: ArchConfig = model.config
    net = _net(config)
    size = model.input_size
    head = model.head
    stem_out = model.blocks_info[0]["in_channels"]
    blocks = [Block(f"stem{net}|res={size}|in=3|out={stem_out}|stride={model.stem_stride}"
                    f"#{structure_digest(model.stem)}", "stem", None, model.stem, (3, size, size))]
    resolution = model.stem_resolution
    for info, unit in zip(model.blocks_info, model.blocks):
        blocks.append(Block(_unit_key(model, info, resolution, unit), "unit", info["index"], unit,
                            (info["in_channels"], resolution, resolution)))
        resolution = info["resolution"]
    channels = model.blocks_info[-1]["out_channels"]
    blocks.append(Block(f"head{net}|res={resolution}|in={channels}|classes={model.num_classes}"
                        f"#{structure_digest(head)}", "head", None, head, (channels, resolution, resolution)))
    return blocks


def block_keys(config: ArchConfig, input_size: int | None = None, num_classes: int | None = None) -> list[str]:
    """The keys of `config`'s blocks in forward order (stem, units, head)."""
    return [b.key for b in network_blocks(build_model(config, num_classes=num_classes, input_size=input_size))]


def menu_configs(space: SearchSpace) -> list[ArchConfig]:
    """Architectures whose blocks together are every block `space` can produce."""
    configs = []
    for ratio in space.ratios:
        common = dict(ratio=ratio, width=space.width, dw_size=space.dw_size, backbone=space.backbone)
        configs.append(ArchConfig(mca=(False,) * space.n_blocks, kernels=space.kernel_sets[0], **common))
        configs.extend(ArchConfig(mca=(True,) * space.n_blocks, kernels=kernels, **common)
                       for kernels in space.kernel_sets)
    return configs
