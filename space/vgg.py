"""VGG-16 for CIFAR (and its Ghost version): the GhostNet paper's Tables 3-5 baseline.

The CIFAR VGG-16 the pruning literature compares on (Li et al. 2017, whose
numbers the GhostNet paper quotes): the 13 3x3 convs of VGG-16, each with
BN and ReLU, five 2x2 max-pools and a 512 -> 512 -> 10 classifier.  At 32^2:
14.99 M parameters, 313.5 M MACs (paper: 15.0 M / 313 M).

One unit (MCA insertion point) per conv: [2x2 max-pool, first conv of
stages 2-5] -> conv -> BN -> ReLU -> [MCA], so an MCA block sees the map its
conv made, and a row's resolution is the conv's output resolution.  The
fifth pool sits in the head, before a global average pool that is an
identity at 32^2 and lets other input sizes reach the 512-wide classifier.

Ghost rule: *every* conv, the first included ("we replace all the
convolutional layers", paper Sec. 4.1); the classifier stays plain.  That
reading matches all nine Ghost-VGG-16 figures within 2 %; keeping the 3 ->
64 stem plain misses s = 5 (66.6 M vs 65 M MACs).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .config import ArchConfig
from .ghostify import keep_none
from .unit import GhostRule, Unit, UnitNet, block_info


@dataclass(frozen=True)
class VGGStage:
    """One VGG stage: `convs` 3x3 convs of `channels`; stages after the first start with a 2x2 max-pool."""

    convs: int
    channels: int


VGG16_LAYOUT: tuple[VGGStage, ...] = (
    # convs, channels
    VGGStage(2, 64),
    VGGStage(2, 128),
    VGGStage(3, 256),
    VGGStage(3, 512),
    VGGStage(3, 512),
)
VGG16_HIDDEN = 512  # classifier: 512 -> hidden -> classes (Li et al.'s CIFAR VGG-16)
VGG_GHOST = GhostRule(keep=keep_none, linear=False)


class VGG(UnitNet):
    """Plain-stack VGG with BN: units of conv + BN + ReLU (+ MCA), then pool -> avgpool -> MLP classifier."""

    stem_kernel = None
    head_kernel = None

    def __init__(self, config: ArchConfig, layout: tuple[VGGStage, ...] = VGG16_LAYOUT, num_classes: int = 10,
                 input_size: int = 32, hidden: int = VGG16_HIDDEN, dropout: float = 0.2,
                 mca_dropout: float = 0.0, ghost: GhostRule = VGG_GHOST) -> None:
        super().__init__(config, num_classes, input_size)
        min_size = 2 ** len(layout)  # one 2x2 max-pool per stage must leave at least one pixel
        if input_size < min_size:
            raise ValueError(f"input_size must be >= {min_size} for a {len(layout)}-stage VGG "
                             f"(one 2x2 max-pool per stage); got {input_size}")
        # no stem: the first conv is an insertion point like every other one
        self.stem = nn.Identity()
        self.stem_stride = 1
        self.stem_resolution = resolution = input_size
        units: list[Unit] = []
        info = []
        in_channels = 3
        for s, stage in enumerate(layout):
            for c in range(stage.convs):
                pool = s > 0 and c == 0
                if pool:
                    resolution = resolution // 2  # MaxPool2d(2) floors
                layers: list[nn.Module] = [nn.MaxPool2d(2)] if pool else []
                layers += [nn.Conv2d(in_channels, stage.channels, 3, padding=1, bias=False),
                           nn.BatchNorm2d(stage.channels), nn.ReLU(inplace=True)]
                units.append(Unit(nn.Sequential(*layers)))
                info.append(block_info(len(info), resolution, in_channels, stage.channels, 2 if pool else 1))
                in_channels = stage.channels
        self.blocks = nn.Sequential(*units)
        self.blocks_info = info
        self.final_resolution = resolution
        self.num_features = in_channels
        self.head = nn.Sequential(
            nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
            nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.finish(ghost, mca_dropout)


def vgg16(config: ArchConfig, num_classes: int = 10, input_size: int = 32, dropout: float = 0.2,
          mca_dropout: float = 0.0) -> VGG:
    """VGG-16 for CIFAR (13 convs with BN, 512-512-classes classifier)."""
    return VGG(config, VGG16_LAYOUT, num_classes, input_size, dropout=dropout, mca_dropout=mca_dropout)

