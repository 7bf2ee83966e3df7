"""The reference architectures every search is compared against, per backbone.

GhostNet keeps its four historical names (`PRESETS`: cnn, ghostnet,
all_mca, selective_mca), which run directories and CLIs already use.  Every
other backbone has the same four roles under names that do not pretend to
be GhostNet: `plain` (s = 1, the paper's baseline), `ghost` (s = 2, the
paper's Ghost-<net>), `all_mca` and `selective_mca` (MCA on the backbone's
middle stage only, kernels 3-5-7, s = 2).  A preset of another backbone is
spelled 'backbone:preset' where one string names an architecture
(`load_arch`, `--arch`), e.g. 'resnet56:selective_mca'.
"""
from __future__ import annotations

from pathlib import Path

from .backbones import BACKBONES
from .config import BACKBONE_NAMES, DEFAULT_BACKBONE, N_BLOCKS, ArchConfig, parse_backbone

# Bottlenecks 5..10 run at 1/16 of the input resolution (14x14 at 224^2):
# the middle stage, where the Selective-MCA paper places attention while the
# shallow, high-resolution layers keep plain Ghost modules.
SELECTIVE_BLOCKS = BACKBONES[DEFAULT_BACKBONE].middle

PRESETS: dict[str, ArchConfig] = {
    "cnn": ArchConfig(mca=(False,) * N_BLOCKS, ratio=1),
    "ghostnet": ArchConfig(mca=(False,) * N_BLOCKS, ratio=2),
    "all_mca": ArchConfig(mca=(True,) * N_BLOCKS, kernels=(3, 5, 7), ratio=2),
    "selective_mca": ArchConfig(
        mca=tuple(i in SELECTIVE_BLOCKS for i in range(N_BLOCKS)), kernels=(3, 5, 7), ratio=2
    ),
}


def _backbone_presets(backbone: str) -> dict[str, ArchConfig]:
    entry = BACKBONES[backbone]
    n = entry.n_points
    return {
        "plain": ArchConfig(mca=(False,) * n, ratio=1, backbone=backbone),
        "ghost": ArchConfig(mca=(False,) * n, ratio=2, backbone=backbone),
        "all_mca": ArchConfig(mca=(True,) * n, kernels=(3, 5, 7), ratio=2, backbone=backbone),
        "selective_mca": ArchConfig(mca=tuple(i in entry.middle for i in range(n)), kernels=(3, 5, 7), ratio=2,
                                    backbone=backbone),
    }


def presets_for(backbone: str = DEFAULT_BACKBONE) -> dict[str, ArchConfig]:
    """The presets of `backbone` by name (GhostNet: `PRESETS` itself); ValueError names the backbones.

    Built at each call (four small frozen configs), not at import: what is built at import is out of reach
    of the mutation run's planted changes (benchmarks/mutation.py)."""
    name = parse_backbone(backbone)
    return PRESETS if name == DEFAULT_BACKBONE else _backbone_presets(name)


def get_preset(name: str, backbone: str = DEFAULT_BACKBONE) -> ArchConfig:
    """The preset called `name` of `backbone`; a ValueError lists the valid names otherwise."""
    presets = presets_for(backbone)
    try:
        return presets[name]
    except (KeyError, TypeError):
        where = "" if backbone == DEFAULT_BACKBONE else f" for backbone {backbone!r}"
        raise ValueError(f"unknown preset {name!r}{where}; choose one of: {', '.join(presets)}") from None


def load_arch(spec: str | Path) -> ArchConfig:
    """A GhostNet preset name, a 'backbone:preset' string, or the path of an ArchConfig JSON file.

    CLIs take one `--arch` argument for all of them, so a user can start from
    a baseline or from whatever analysis selected (e.g. best.json).  An
    existing file wins over the 'backbone:preset' reading of a path that
    happens to contain a colon.
    """
    text = str(spec)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.is_file():
        return ArchConfig.load(path)
    backbone, colon, name = text.partition(":")
    if colon and backbone in BACKBONE_NAMES:
        return get_preset(name, backbone)
    if path.exists():
        raise ValueError(f"arch {text!r} is not a preset and not a regular file")
    if colon and "/" not in backbone and "\\" not in backbone:
        raise ValueError(f"unknown arch {text!r}: backbone {backbone!r} is not one of "
                         f"{', '.join(BACKBONE_NAMES)}")
    raise ValueError(f"unknown arch {text!r}: neither a preset ({', '.join(PRESETS)}, or backbone:preset "
                     f"such as resnet56:selective_mca) nor an existing ArchConfig JSON file")
