"""The backbone registry and `build_model`: one `ArchConfig` -> one nn.Module, whatever the backbone.

| name      | data set | insertion points (MCA after ...)       | middle stage (selective_mca)       |
|-----------|----------|----------------------------------------|------------------------------------|
| ghostnet  | CIFAR-10 | each of 16 Ghost bottlenecks           | 5..10 (1/16 resolution)            |
| vgg16     | CIFAR-10 | each of 13 conv + BN + ReLU            | 4..6 (stage 3 of 5, 256 channels)  |
| resnet56  | CIFAR-10 | each of 27 basic blocks                | 9..17 (stage 2 of 3, 32 channels)  |
| resnet50  | ImageNet | each of 16 bottlenecks                 | 7..12 (stage 3 of 4, 1/16 res.)    |

The middle stage is where the Selective-MCA paper puts attention: the
shallow, high-resolution layers keep plain (Ghost) convs, and the deepest
ones are left alone too.  The GhostNet paper's other systems (VGG-16 and
ResNet-56 on CIFAR-10, ResNet-50 on ImageNet) are here so the same search
can be run on them; their figures are reproduced in tests/test_backbones.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from .config import BACKBONE_NAMES, MCA_POINTS, ArchConfig, parse_backbone
from .ghostnet import GHOSTNET_LAYOUT, build_ghostnet
from .resnet import RESNET50_LAYOUT, RESNET56_LAYOUT, resnet50, resnet56
from .vgg import VGG16_LAYOUT, vgg16


@dataclass(frozen=True)
class Backbone:
    """A registry entry: how to build the network and what it is built for by default."""

    name: str
    build: Callable[..., nn.Module]  # (config, num_classes, input_size, dropout, mca_dropout)
    n_points: int                    # MCA insertion points = len(ArchConfig.mca)
    input_size: int                  # default input side (32: CIFAR, 224: ImageNet)
    num_classes: int
    dropout: float                   # before the classifier (GhostNet's 0.2, VGG's MLP 0.5, ResNets none)
    middle: range                    # insertion points of the middle stage: selective_mca's placement
    summary: str


def _ghostnet(config: ArchConfig, num_classes: int, input_size: int, dropout: float, mca_dropout: float,
              stem_stride: int | None = None) -> nn.Module:
    return build_ghostnet(config, num_classes, input_size, stem_stride, dropout, mca_dropout)


BACKBONES: dict[str, Backbone] = {
    "ghostnet": Backbone("ghostnet", _ghostnet, len(GHOSTNET_LAYOUT), 32, 10, 0.2, range(5, 11),
                         "GhostNet 1.0x (paper Table 1), CIFAR stem stride 1"),
    "vgg16": Backbone("vgg16", vgg16, sum(s.convs for s in VGG16_LAYOUT), 32, 10, 0.5, range(4, 7),
                      "VGG-16 with BN for CIFAR-10 (paper Tables 3-5)"),
    "resnet56": Backbone("resnet56", resnet56, sum(s.blocks for s in RESNET56_LAYOUT), 32, 10, 0.0, range(9, 18),
                         "ResNet-56 for CIFAR-10, option-A shortcuts (paper Table 5)"),
    "resnet50": Backbone("resnet50", resnet50, sum(s.blocks for s in RESNET50_LAYOUT), 224, 1000, 0.0,
                         range(7, 13), "ResNet-50 for ImageNet, torchvision layout (paper Table 6)"),
}
# ArchConfig validates placements with config.MCA_POINTS (torch-free); the layouts must agree with it.
assert tuple(BACKBONES) == BACKBONE_NAMES
assert all(b.n_points == MCA_POINTS[name] and b.middle[-1] < b.n_points for name, b in BACKBONES.items())


def get_backbone(name: str) -> Backbone:
    """The registry entry of `name`; ValueError names the allowed backbones."""
    return BACKBONES[parse_backbone(name)]


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    return value


def build_model(config: ArchConfig, num_classes: int | None = None, input_size: int | None = None,
                stem_stride: int | None = None, dropout: float | None = None,
                mca_dropout: float = 0.0) -> nn.Module:
    """Build the network of `config` (a preset name, 'backbone:preset' or JSON file: `load_arch` it first).

    `num_classes`, `input_size` and `dropout` default to the backbone's
    (`BACKBONES`): 10 classes at 32^2 for the CIFAR backbones (GhostNet
    included, as before), 1000 at 224^2 for resnet50.  The model is built
    for its input size (MCA kernels are clipped to the maps they will see)
    and keeps it as `model.input_size`, which `count_macs(model)` counts at.
    `stem_stride` is GhostNet's (None: 1 up to 64 px, else 2); the other
    backbones have a fixed stem and reject it.
    """
    if not isinstance(config, ArchConfig):
        raise ValueError(f"config must be an ArchConfig (space.load_arch reads a preset name or a JSON file); "
                         f"got {type(config).__name__}")
    entry = BACKBONES[config.backbone]
    num_classes = _check_int("num_classes", entry.num_classes if num_classes is None else num_classes, 1)
    input_size = _check_int("input_size", entry.input_size if input_size is None else input_size, 1)
    dropout = entry.dropout if dropout is None else dropout
    for name, p in (("dropout", dropout), ("mca_dropout", mca_dropout)):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name} must be in [0, 1); got {p!r}")
    if config.backbone == "ghostnet":
        return _ghostnet(config, num_classes, input_size, dropout, mca_dropout, stem_stride)
    if stem_stride is not None:
        raise ValueError(f"stem_stride applies to ghostnet only; backbone {config.backbone!r} has a fixed stem")
    return entry.build(config, num_classes, input_size, dropout, mca_dropout)

