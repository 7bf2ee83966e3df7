"""`SearchSpace`: the menu the sampler picks from, and its flat-parameter form.

Optuna (through Ray's `OptunaSearch`) sees an architecture as flat
categorical parameters: `mca_0`..`mca_{n-1}` (one per insertion point of the
space's backbone: 16 for GhostNet), `kernels` ("3-5-7") and `ratio`.
Every parameter is suggested on every trial, even when no MCA bit is set,
so the parameter set is fixed — what NSGA-II and the TPE samplers need to
model the space jointly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from cli_kit import UserError
from .config import (DEFAULT_BACKBONE, ArchConfig, as_bit, as_int, format_kernels, mca_length,
                     parse_backbone, parse_dw_size, parse_kernels, parse_ratio, parse_width)

if TYPE_CHECKING:  # optuna is only needed by callers that own a trial
    import optuna


DEFAULT_KERNEL_SETS = "3-5-7,5-7-11,7-11-21"
DEFAULT_RATIOS = "2,3,4"


def parse_ints(text: str, flag: str, sep: str = ",") -> tuple[int, ...]:
    """'2,3,4' -> (2, 3, 4): the menu flags' integer lists, parsed in one place.

    `search.run` and `runtime.latency_table` take the same menu flags, so they
    must read them the same way; `flag` only names the flag in the error.
    """
    try:
        return tuple(int(x) for x in text.split(sep) if x.strip())
    except ValueError:
        raise UserError(f"{flag} expects integers, got {text!r}") from None


def parse_kernel_sets(text: str, flag: str = "--kernel-sets") -> tuple[tuple[int, ...], ...]:
    """'3-5-7,5-7-11' -> ((3, 5, 7), (5, 7, 11)); values are checked by `SearchSpace`."""
    sets = tuple(parse_ints(part, flag, "-") for part in text.split(",") if part.strip())
    if not sets:
        raise UserError(f"{flag} needs at least one set, e.g. 3-5-7")
    return sets


_FIELDS = ("kernel_sets", "ratios", "width", "dw_size", "backbone")


def mca_param(i: int) -> str:
    """Name of the placement parameter of insertion point i: 'mca_3'."""
    return f"mca_{i}"


@dataclass(frozen=True)
class SearchSpace:
    """Placement bits x kernel-scale sets x ghost ratios, at fixed backbone, width and d."""

    kernel_sets: tuple[tuple[int, ...], ...] = ((3, 5, 7), (5, 7, 11), (7, 11, 21))
    ratios: tuple[int, ...] = (2, 3, 4)
    width: float = 1.0
    dw_size: int = 3
    backbone: str = DEFAULT_BACKBONE

    def __post_init__(self) -> None:
        object.__setattr__(self, "backbone", parse_backbone(self.backbone))
        sets = tuple(parse_kernels(s) for s in self.kernel_sets)
        if not sets or len(set(sets)) != len(sets):
            raise ValueError(f"SearchSpace.kernel_sets must be a non-empty list of distinct kernel sets; "
                             f"got {self.kernel_sets!r}")
        ratios = tuple(parse_ratio(r) for r in self.ratios)
        if not ratios or len(set(ratios)) != len(ratios):
            raise ValueError(f"SearchSpace.ratios must be a non-empty list of distinct ints in 1..8; "
                             f"got {self.ratios!r}")
        object.__setattr__(self, "kernel_sets", sets)
        object.__setattr__(self, "ratios", ratios)
        object.__setattr__(self, "width", parse_width(self.width, self.backbone))
        object.__setattr__(self, "dw_size", parse_dw_size(self.dw_size))

    @property
    def n_blocks(self) -> int:
        """Number of placement bits (insertion points of the backbone)."""
        return mca_length(self.backbone)

    @property
    def kernel_choices(self) -> list[str]:
        """The kernel sets as the strings Optuna stores ('3-5-7')."""
        return [format_kernels(s) for s in self.kernel_sets]

    def suggest(self, trial: "optuna.trial.BaseTrial") -> ArchConfig:
        """Define-by-run: ask the trial for every parameter, build the config."""
        params: dict[str, Any] = {}
        for i in range(self.n_blocks):
            params[mca_param(i)] = trial.suggest_categorical(mca_param(i), [False, True])
        params["kernels"] = trial.suggest_categorical("kernels", self.kernel_choices)
        params["ratio"] = trial.suggest_categorical("ratio", list(self.ratios))
        return self.from_params(params)

    def to_params(self, config: ArchConfig) -> dict[str, Any]:
        """Flat params for `config` (e.g. Ray's `points_to_evaluate`).

        Raises ValueError when the config lies outside this menu: a point the
        sampler could never have suggested would corrupt its model of the space.
        A config without any MCA does not depend on its kernels, so it maps to
        the menu's first kernel set when its own is not on the menu (same key).
        """
        if config.backbone != self.backbone:
            raise ValueError(f"config has backbone {config.backbone!r} but the search space is over "
                             f"{self.backbone!r}")
        kernels = config.kernels
        if not any(config.mca) and kernels not in self.kernel_sets:
            kernels = self.kernel_sets[0]
        if kernels not in self.kernel_sets:
            raise ValueError(f"kernels {format_kernels(config.kernels)!r} are not in the search space; "
                             f"allowed: {', '.join(self.kernel_choices)}")
        if config.ratio not in self.ratios:
            raise ValueError(f"ratio {config.ratio} is not in the search space; "
                             f"allowed: {', '.join(map(str, self.ratios))}")
        if config.width != self.width or config.dw_size != self.dw_size:
            raise ValueError(f"config has width={config.width!r}, dw_size={config.dw_size} but the "
                             f"search space fixes width={self.width!r}, dw_size={self.dw_size}")
        params: dict[str, Any] = {mca_param(i): bit for i, bit in enumerate(config.mca)}
        params["kernels"] = format_kernels(kernels)
        params["ratio"] = config.ratio
        return params

    def from_params(self, params: Mapping[str, Any]) -> ArchConfig:
        """The config for flat params as `suggest`/`to_params` name them.

        Extra keys are ignored (a Ray trial config carries other settings);
        missing keys, an unknown kernel set or ratio raise ValueError.
        """
        missing = [name for name in [*map(mca_param, range(self.n_blocks)), "kernels", "ratio"]
                   if name not in params]
        if missing:
            raise ValueError(f"search params are missing {', '.join(missing)}")
        bits = []
        for i in range(self.n_blocks):
            bit = as_bit(params[mca_param(i)])
            if bit is None:
                raise ValueError(f"{mca_param(i)} must be True/False or 0/1; got {params[mca_param(i)]!r}")
            bits.append(bit)
        kernels = parse_kernels(params["kernels"])
        if kernels not in self.kernel_sets:
            raise ValueError(f"unknown kernel set {params['kernels']!r}; allowed: {', '.join(self.kernel_choices)}")
        ratio = as_int(params["ratio"])
        if ratio not in self.ratios:
            raise ValueError(f"unknown ratio {params['ratio']!r}; allowed: {', '.join(map(str, self.ratios))}")
        return ArchConfig(mca=tuple(bits), kernels=kernels, ratio=ratio, width=self.width,
                          dw_size=self.dw_size, backbone=self.backbone)

    def size(self) -> int:
        """Number of distinct models in the menu (distinct `ArchConfig.key`s).

        Placements without any MCA do not depend on the kernel set, so they
        count once per ratio.
        """
        with_mca = (2 ** self.n_blocks - 1) * len(self.kernel_sets) * len(self.ratios)
        return with_mca + len(self.ratios)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as run.json stores it."""
        return {"kernel_sets": [list(s) for s in self.kernel_sets], "ratios": list(self.ratios),
                "width": self.width, "dw_size": self.dw_size, "backbone": self.backbone}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SearchSpace":
        """The space of a `to_dict()` dump; without "backbone" (older run.json files) it is GhostNet's."""
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ValueError(f"SearchSpace has no field {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(_FIELDS)}")
        return cls(**data)  # __post_init__ turns JSON lists into the tuples the space holds
