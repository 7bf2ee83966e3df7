"""`ArchConfig`: one point of the search space, as plain validated data.

Everything downstream (trainer, search, analysis, run directories) passes
architectures around as an `ArchConfig` or its JSON / canonical `key`, so the
class is frozen, validates on construction and round-trips through JSON
without loss.  Invalid values raise a single `ValueError` that names the field
and the allowed values: users hit these through config files and CLI flags.

The backbone names and their numbers of MCA insertion points live here, as
plain data, because validating a placement needs them and this module must
stay free of torch; `space.backbones` (the builders) asserts at import time
that every layout has exactly that many insertion points.
"""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable

N_BLOCKS = 16
"""Number of Ghost bottlenecks in the GhostNet layout (paper Table 1)."""

DEFAULT_BACKBONE = "ghostnet"
MCA_POINTS: dict[str, int] = {
    "ghostnet": N_BLOCKS,  # after each Ghost bottleneck
    "vgg16": 13,           # after each conv + BN + ReLU
    "resnet56": 27,        # after each basic block (3 stages x 9)
    "resnet50": 16,        # after each bottleneck block (3 + 4 + 6 + 3)
}
"""Backbone name -> number of MCA insertion points (= length of `ArchConfig.mca`)."""
BACKBONE_NAMES = tuple(MCA_POINTS)

KERNEL_MIN, KERNEL_MAX = 3, 31
RATIO_MIN, RATIO_MAX = 1, 8
WIDTH_MAX = 4.0

_ALLOWED = {
    "backbone": f"one of: {', '.join(BACKBONE_NAMES)}",
    "kernels": f"a non-empty set of distinct odd ints in {KERNEL_MIN}..{KERNEL_MAX}, e.g. [3, 5, 7] or '3-5-7'",
    "ratio": f"an int in {RATIO_MIN}..{RATIO_MAX} (1 = plain convolution)",
    "width": f"a number with 0 < width <= {WIDTH_MAX:g}",
    "dw_size": "an odd int >= 1",
}


def _fail(name: str, value: Any) -> ValueError:
    return ValueError(f"ArchConfig.{name} must be {_ALLOWED[name]}; got {value!r}")


def mca_length(backbone: str) -> int:
    """Number of MCA insertion points of `backbone` (16 for GhostNet); ValueError names the allowed ones."""
    return MCA_POINTS[parse_backbone(backbone)]


def _allowed_mca(backbone: str) -> str:
    n = MCA_POINTS[backbone]
    return (f"a sequence of {n} booleans (or 0/1), or a string of {n} '0'/'1' characters "
            f"(one per insertion point of backbone {backbone!r})")


def as_int(value: Any) -> int | None:
    """An exact integer from ints, numpy ints or integral floats; None otherwise.

    Optuna, pandas and JSON hand back 2, np.int64(2) or 2.0 for the same value;
    all of them mean the same architecture, a bool or 2.5 does not.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def as_bit(value: Any) -> bool | None:
    """True/False from bools, numpy bools, 0/1 ints or '0'/'1' strings; None otherwise."""
    if isinstance(value, str):
        return {"0": False, "1": True}.get(value)
    if type(value).__name__ == "bool_" or isinstance(value, (bool, numbers.Integral)):
        if value in (0, 1):
            return bool(value)
    return None


def format_kernels(kernels: Iterable[int]) -> str:
    """'3-5-7': the one spelling of a kernel set used in keys, CLI and CSV."""
    return "-".join(str(k) for k in kernels)


def parse_kernels(value: Any) -> tuple[int, ...]:
    """Validate a kernel set given as '3-5-7', [3, 5, 7] or (3, 5, 7); return it sorted."""
    raw: list[Any]
    if isinstance(value, str):
        parts = value.replace(",", "-").split("-")
        raw = []
        for part in parts:
            try:
                raw.append(int(part.strip()))
            except ValueError:
                raise _fail("kernels", value) from None
    elif isinstance(value, Iterable):
        raw = list(value)
    else:
        raise _fail("kernels", value)
    ints = [as_int(k) for k in raw]
    if (not ints or any(k is None or k % 2 == 0 or not KERNEL_MIN <= k <= KERNEL_MAX for k in ints)
            or len(set(ints)) != len(ints)):
        raise _fail("kernels", value)
    return tuple(sorted(ints))  # type: ignore[arg-type]


def parse_backbone(value: Any) -> str:
    if isinstance(value, str) and value in MCA_POINTS:
        return value
    raise _fail("backbone", value)


def parse_mca(value: Any, backbone: str = DEFAULT_BACKBONE) -> tuple[bool, ...]:
    """Validate an MCA placement: one bit per insertion point of `backbone`, as bools, 0/1 or a '0'/'1' string."""
    n = mca_length(backbone)
    if isinstance(value, (str, Iterable)):
        bits = [as_bit(v) for v in value]
        if len(bits) == n and all(b is not None for b in bits):
            return tuple(bits)  # type: ignore[arg-type]
    raise ValueError(f"ArchConfig.mca must be {_allowed_mca(backbone)}; got {value!r}")


def parse_ratio(value: Any) -> int:
    ratio = as_int(value)
    if ratio is None or not RATIO_MIN <= ratio <= RATIO_MAX:
        raise _fail("ratio", value)
    return ratio


def parse_width(value: Any, backbone: str = DEFAULT_BACKBONE) -> float:
    """A width multiplier; only GhostNet has one (VGG / ResNet keep the paper's channel counts: 1.0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail("width", value)
    width = float(value)
    if not (math.isfinite(width) and 0.0 < width <= WIDTH_MAX):
        raise _fail("width", value)
    if backbone != DEFAULT_BACKBONE and width != 1.0:
        raise ValueError(f"ArchConfig.width must be 1.0 for backbone {backbone!r} (only ghostnet has a width "
                         f"multiplier); got {value!r}")
    return width


def parse_dw_size(value: Any) -> int:
    d = as_int(value)
    if d is None or d < 1 or d % 2 == 0:
        raise _fail("dw_size", value)
    return d


@dataclass(frozen=True)
class ArchConfig:
    """A network of one backbone: where MCA sits, its kernel scales, ghost ratio, width.

    `backbone` names the network (`BACKBONE_NAMES`; GhostNet by default, so
    configs and files written before other backbones existed still mean the
    same thing).  `mca[i]` puts an MCA block after insertion point i of that
    backbone (GhostNet: bottleneck i).  `ratio` is the ghost ratio s (1 turns
    every Ghost module into a plain convolution: the "cnn" baseline).
    `kernels` is stored sorted, so (7, 3, 5) and (3, 5, 7) are the same
    config.  It is kept even when no MCA is placed, but the `key` then shows
    '-' because the built model does not depend on it.
    """

    mca: tuple[bool, ...]
    kernels: tuple[int, ...] = (3, 5, 7)
    ratio: int = 2
    width: float = 1.0
    dw_size: int = 3
    backbone: str = DEFAULT_BACKBONE

    def __post_init__(self) -> None:
        # Normalise once here so equality, hashing and keys never depend on
        # whether a caller passed a list, a numpy int or an unsorted tuple.
        # The backbone first: the placement length and the width rule depend on it.
        object.__setattr__(self, "backbone", parse_backbone(self.backbone))
        object.__setattr__(self, "mca", parse_mca(self.mca, self.backbone))
        object.__setattr__(self, "kernels", parse_kernels(self.kernels))
        object.__setattr__(self, "ratio", parse_ratio(self.ratio))
        object.__setattr__(self, "width", parse_width(self.width, self.backbone))
        object.__setattr__(self, "dw_size", parse_dw_size(self.dw_size))

    # ------------------------------------------------------------------ names
    @property
    def n_blocks(self) -> int:
        """Number of MCA insertion points of the backbone (= len(mca))."""
        return MCA_POINTS[self.backbone]

    @property
    def mca_string(self) -> str:
        """'0000011111100000': the placement as one bit per insertion point."""
        return "".join("1" if b else "0" for b in self.mca)

    @property
    def n_mca(self) -> int:
        return sum(self.mca)

    @property
    def key(self) -> str:
        """Canonical name: equal keys <=> identical built models.

        GhostNet keys carry no backbone prefix: they are the keys run
        directories made before other backbones existed, and old trials are
        deduplicated by them.  Every other backbone's key starts 'net=<name>|'.
        """
        kernels = format_kernels(self.kernels) if any(self.mca) else "-"
        key = f"mca={self.mca_string}|k={kernels}|s={self.ratio}|w={self.width!r}|d={self.dw_size}"
        return key if self.backbone == DEFAULT_BACKBONE else f"net={self.backbone}|{key}"

    # ------------------------------------------------------------ round trips
    def to_dict(self) -> dict[str, Any]:
        return {
            "mca": list(self.mca),
            "kernels": list(self.kernels),
            "ratio": self.ratio,
            "width": self.width,
            "dw_size": self.dw_size,
            "backbone": self.backbone,
        }

    @classmethod
    def from_dict(cls, data: Any) -> "ArchConfig":
        """The config of a `to_dict()` dump; a dict without "backbone" (older files) is a GhostNet."""
        if not isinstance(data, dict):
            raise ValueError(f"ArchConfig must be a JSON object / dict with keys {_field_names()}; "
                             f"got {type(data).__name__}")
        unknown = sorted(set(data) - set(_field_names()))
        if unknown:
            raise ValueError(f"ArchConfig has no field {', '.join(map(repr, unknown))}; "
                             f"allowed fields: {', '.join(_field_names())}")
        backbone = parse_backbone(data.get("backbone", DEFAULT_BACKBONE))
        if "mca" not in data:
            raise ValueError(f"ArchConfig.mca is required: {_allowed_mca(backbone)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> "ArchConfig":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"ArchConfig JSON is malformed: {exc}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ArchConfig":
        """Read a JSON file written by `save` (or any `to_dict()` dump)."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read ArchConfig file {str(path)!r}: {exc.strerror or exc}") from None
        try:
            return cls.from_json(text)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def _field_names() -> list[str]:
    return [f.name for f in fields(ArchConfig)]
