"""The four reference architectures every search is compared against."""
from __future__ import annotations

from pathlib import Path

from .config import N_BLOCKS, ArchConfig

# Bottlenecks 5..10 run at 1/16 of the input resolution (14x14 at 224^2):
# the middle stage, where the Selective-MCA paper places attention while the
# shallow, high-resolution layers keep plain Ghost modules.
SELECTIVE_BLOCKS = range(5, 11)

PRESETS: dict[str, ArchConfig] = {
    "cnn": ArchConfig(mca=(False,) * N_BLOCKS, ratio=1),
    "ghostnet": ArchConfig(mca=(False,) * N_BLOCKS, ratio=2),
    "all_mca": ArchConfig(mca=(True,) * N_BLOCKS, kernels=(3, 5, 7), ratio=2),
    "selective_mca": ArchConfig(
        mca=tuple(i in SELECTIVE_BLOCKS for i in range(N_BLOCKS)), kernels=(3, 5, 7), ratio=2
    ),
}


def get_preset(name: str) -> ArchConfig:
    """The preset called `name`; a ValueError lists the valid names otherwise."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


def load_arch(spec: str | Path) -> ArchConfig:
    """A preset name or the path of an ArchConfig JSON file (e.g. best.json).

    CLIs take one `--arch` argument for both, so a user can start from a
    baseline or from whatever analysis selected.
    """
    text = str(spec)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.is_file():
        return ArchConfig.load(path)
    if path.exists():
        raise ValueError(f"arch {text!r} is not a preset and not a regular file")
    raise ValueError(f"unknown arch {text!r}: neither a preset ({', '.join(PRESETS)}) "
                     f"nor an existing ArchConfig JSON file")
