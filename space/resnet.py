"""ResNet-56 (CIFAR) and ResNet-50 (ImageNet), and their Ghost versions: paper Tables 5 and 6.

Both are one class fed with data: a stem (`StemSpec`), stages of residual
blocks (`StageSpec` rows) and a block type.

- ResNet-56 (He et al. 2016, Sec. 4.2): 3x3 stem to 16 channels, three
  stages of nine basic blocks (16, 32, 64 channels), parameter-free
  shortcuts (option A: stride-2 subsampling and zero-padded channels).
  At 32^2: 0.853 M parameters, 125.5 M MACs (paper: 0.85 M / 125 M).
- ResNet-50: torchvision's `resnet50` (v1.5: the stride sits on the 3x3
  conv; 1x1 conv + BN projection shortcuts), rebuilt here so MCA can sit
  after each of its 16 bottlenecks.  At 224^2: 25.56 M / 4.09 B MACs, the
  same counts as torchvision's model (paper: 25.6 M / 4.1 B).

Ghost rules (which layers ghostify replaces when ratio > 1):
- ResNet-56: every conv, stem included ("all the convolutional layers",
  paper Sec. 4.1; the 432-weight stem changes no reported figure).
- ResNet-50: every conv but the 7x7 stem (as in Huawei's released
  Ghost-ResNet-50), *and* the 2048 -> 1000 classifier: Table 6's 13.0 M
  (s = 2) and 6.5 M (s = 4) parameters are out of reach with a plain
  classifier (13.95 M / 8.15 M), within 1 % / 2 % with it ghosted.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from .config import ArchConfig
from .ghostify import keep_none, keep_stem_and_grouped
from .unit import GhostRule, Unit, UnitNet, block_info


@dataclass(frozen=True)
class StemSpec:
    """The stem: a k x k conv (stride) + BN + ReLU, then optionally a 3x3 stride-2 max-pool."""

    channels: int
    kernel: int
    stride: int
    max_pool: bool


@dataclass(frozen=True)
class StageSpec:
    """One stage: `blocks` residual blocks of `width` channels (a bottleneck outputs 4 x width); the first has `stride`."""

    blocks: int
    width: int
    stride: int


CIFAR_STEM = StemSpec(16, 3, 1, max_pool=False)
IMAGENET_STEM = StemSpec(64, 7, 2, max_pool=True)

RESNET56_LAYOUT: tuple[StageSpec, ...] = (
    # blocks, width, stride
    StageSpec(9, 16, 1),
    StageSpec(9, 32, 2),
    StageSpec(9, 64, 2),
)
RESNET50_LAYOUT: tuple[StageSpec, ...] = (
    StageSpec(3, 64, 1),
    StageSpec(4, 128, 2),
    StageSpec(6, 256, 2),
    StageSpec(3, 512, 2),
)
RESNET56_GHOST = GhostRule(keep=keep_none, linear=False)
RESNET50_GHOST = GhostRule(keep=keep_stem_and_grouped, linear=True)


def _down(size: int, stride: int) -> int:
    """Output side of a 'same'-padded conv / pool with this stride: ceil(size / stride)."""
    return -(-size // stride)


class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU, 3x3 conv-BN, + option-A shortcut, ReLU (CIFAR ResNets)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.stride = stride
        self.pad = width - in_channels  # option A: zero channels, no parameters

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride), 1x1 expand x4, each with BN; projection shortcut when the shape changes."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


@dataclass(frozen=True)
class ResNetSpec:
    """A ResNet as data: its stages, its residual block, its stem and which layers become Ghost modules."""

    layout: tuple[StageSpec, ...]
    block: type[BasicBlock | Bottleneck]
    stem: StemSpec
    ghost: GhostRule


RESNET56 = ResNetSpec(RESNET56_LAYOUT, BasicBlock, CIFAR_STEM, RESNET56_GHOST)
RESNET50 = ResNetSpec(RESNET50_LAYOUT, Bottleneck, IMAGENET_STEM, RESNET50_GHOST)


class ResNet(UnitNet):
    """stem -> residual blocks (+ MCA) per `layout` -> global average pool -> dropout -> linear."""

    head_kernel = None

    def __init__(self, config: ArchConfig, spec: ResNetSpec, num_classes: int = 10, input_size: int = 32,
                 dropout: float = 0.0, mca_dropout: float = 0.0) -> None:
        super().__init__(config, num_classes, input_size)
        layout, block, stem, ghost = spec.layout, spec.block, spec.stem, spec.ghost
        stem_layers: list[nn.Module] = [nn.Conv2d(3, stem.channels, stem.kernel, stem.stride, stem.kernel // 2,
                                                  bias=False),
                                        nn.BatchNorm2d(stem.channels), nn.ReLU(inplace=True)]
        resolution = _down(input_size, stem.stride)
        self.stem_stride = stem.stride
        if stem.max_pool:
            stem_layers.append(nn.MaxPool2d(3, 2, 1))
            resolution = _down(resolution, 2)
            self.stem_stride *= 2
        self.stem = nn.Sequential(*stem_layers)
        self.stem_kernel = stem.kernel
        self.stem_resolution = resolution

        units: list[Unit] = []
        info = []
        in_channels = stem.channels
        for spec in layout:
            for b in range(spec.blocks):
                stride = spec.stride if b == 0 else 1
                resolution = _down(resolution, stride)
                unit = block(in_channels, spec.width, stride)
                out_channels = spec.width * block.expansion
                units.append(Unit(unit))
                info.append(block_info(len(info), resolution, in_channels, out_channels, stride,
                                       expansion=spec.width if block is Bottleneck else None))
                in_channels = out_channels
        self.blocks = nn.Sequential(*units)
        self.blocks_info = info
        self.final_resolution = resolution
        self.num_features = in_channels
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(dropout),
                                  nn.Linear(in_channels, num_classes))
        self.finish(ghost, mca_dropout)


def resnet56(config: ArchConfig, num_classes: int = 10, input_size: int = 32, dropout: float = 0.0,
             mca_dropout: float = 0.0) -> ResNet:
    """ResNet-56 for CIFAR: 3 x 9 basic blocks, option-A shortcuts."""
    return ResNet(config, RESNET56, num_classes, input_size, dropout, mca_dropout)


def resnet50(config: ArchConfig, num_classes: int = 1000, input_size: int = 224, dropout: float = 0.0,
             mca_dropout: float = 0.0) -> ResNet:
    """ResNet-50 (torchvision v1.5 layout): 3-4-6-3 bottlenecks, projection shortcuts."""
    return ResNet(config, RESNET50, num_classes, input_size, dropout, mca_dropout)
