"""The search space: GhostNet + selective MCA as data, models, and their cost.

Depends on nothing else in the project; trainer, search and analysis import
from here.
"""
from .config import N_BLOCKS, ArchConfig
from .cost import count_macs, count_macs_by_module, count_params, thop_macs
from .ghostnet import GHOSTNET_LAYOUT, BlockSpec, GhostNet, build_model
from .presets import PRESETS, get_preset, load_arch
from .search_space import SearchSpace

__all__ = [
    "N_BLOCKS", "ArchConfig", "SearchSpace", "PRESETS", "get_preset", "load_arch",
    "build_model", "GhostNet", "GHOSTNET_LAYOUT", "BlockSpec",
    "count_macs", "count_macs_by_module", "count_params", "thop_macs",
]
