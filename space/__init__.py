"""The search space: GhostNet (and the GhostNet paper's VGG-16, ResNet-56, ResNet-50) + selective MCA.

Architectures as data (`ArchConfig`, `SearchSpace`, presets), the models they
build (`build_model`, `ghostify`) and their cost.  Depends on nothing else in
the project; trainer, search and analysis import from here.
"""
from .backbones import BACKBONES, Backbone, build_model, get_backbone
from .config import BACKBONE_NAMES, N_BLOCKS, ArchConfig, mca_length
from .cost import count_macs, count_macs_by_module, count_params, thop_macs
from .ghostify import GhostConv2d, GhostLinear, ghostify
from .ghostnet import GHOSTNET_LAYOUT, BlockSpec, GhostNet
from .presets import PRESETS, get_preset, load_arch, presets_for
from .search_space import SearchSpace

__all__ = [
    "N_BLOCKS", "ArchConfig", "SearchSpace", "PRESETS", "get_preset", "load_arch", "presets_for",
    "build_model", "GhostNet", "GHOSTNET_LAYOUT", "BlockSpec",
    "BACKBONES", "BACKBONE_NAMES", "Backbone", "get_backbone", "mca_length",
    "ghostify", "GhostConv2d", "GhostLinear",
    "count_macs", "count_macs_by_module", "count_params", "thop_macs",
]
