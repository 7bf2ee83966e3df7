"""A weight-sharing supernet: one network that holds every architecture of a run menu.

Single-path one-shot NAS (Guo et al. 2020; FairNAS, Chu et al. 2021) trains
one supernet instead of one network per architecture; each step trains one
sampled *path*, and afterwards any architecture of the menu is scored with the
weights it inherits.  Our menu suits it: an MCA block sits after a bottleneck
with the same channels in and out, so "MCA off" is the block skipped.

How the weights are shared (the reasons are in docs/oneshot.md):

- **One trunk per ghost ratio.**  A trunk is the backbone without MCA (stem,
  units, head) built at ratio s.  The ratio changes the shape of every Ghost
  module (m = ceil(n/s) intrinsic maps, m(s-1) ghost maps, in that order), so
  slicing one ratio's weights into another's would re-assign which intrinsic
  map each output channel derives from; a trunk per ratio keeps every path a
  network that exists on its own.
- **One MCA block per (insertion point, kernel set)**, shared by every ratio:
  MCA's channels and feature size do not depend on s.

A path is an `ArchConfig` of the menu; `extract` turns one into an ordinary
`space` model (`build_model`) holding the path's weights, whose logits equal
the supernet's on that path — so export, latency, full training and
`search.confirm` take it unchanged.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from .backbones import build_model
from .config import ArchConfig, format_kernels
from .mca import MCA
from .search_space import SearchSpace


class OutsideMenu(ValueError):
    """An architecture the supernet does not hold (another backbone, ratio, kernel set, width or d)."""


class Supernet(nn.Module):
    """Every architecture of `space` in one module; `forward` runs the path `active` names.

    `path_fn`, when set, chooses the path of each training-mode forward pass
    from the count of passes so far (`steps`, a buffer: a checkpoint carries
    it, so a resumed training draws the same paths).  In eval mode, or without
    `path_fn`, the forward pass runs `active`.
    """

    def __init__(self, space: SearchSpace, num_classes: int = 10, input_size: int = 32,
                 mca_dropout: float = 0.0) -> None:
        super().__init__()
        self.space = space
        self.num_classes, self.input_size, self.mca_dropout = num_classes, input_size, mca_dropout
        off = (False,) * space.n_blocks
        self.trunks = nn.ModuleDict({
            str(ratio): build_model(self._config(off, space.kernel_sets[0], ratio), num_classes, input_size)
            for ratio in space.ratios})
        info = next(iter(self.trunks.values())).blocks_info
        self.mcas = nn.ModuleList(
            nn.ModuleDict({format_kernels(kernels): MCA(row["out_channels"], kernels, feature_size=row["resolution"],
                                                        dropout=mca_dropout)
                           for kernels in space.kernel_sets})
            for row in info)
        # Everything after the last unit, per trunk (GhostNet's conv_last included): the trunks' own modules,
        # in a plain dict so they are not registered twice.
        self._heads = {name: trunk.head for name, trunk in self.trunks.items()}
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.path_fn = None  # step -> ArchConfig, for training (trainer.supernet.PathSampler)
        self.active = self._config(off, space.kernel_sets[0], space.ratios[0])

    def _config(self, mca: tuple[bool, ...], kernels: tuple[int, ...], ratio: int) -> ArchConfig:
        return ArchConfig(mca=mca, kernels=kernels, ratio=ratio, width=self.space.width, dw_size=self.space.dw_size,
                          backbone=self.space.backbone)

    def check(self, arch: ArchConfig) -> ArchConfig:
        """`arch` if the supernet holds it, else OutsideMenu naming what differs."""
        space = self.space
        wrong = {"backbone": (arch.backbone, space.backbone), "width": (arch.width, space.width),
                 "dw_size": (arch.dw_size, space.dw_size)}
        for name, (got, want) in wrong.items():
            if got != want:
                raise OutsideMenu(f"{arch.key} is outside the supernet's menu: {name} {got!r}, the supernet's is "
                                  f"{want!r}")
        if arch.ratio not in space.ratios:
            raise OutsideMenu(f"{arch.key} is outside the supernet's menu: ratio {arch.ratio} is not one of "
                              f"{', '.join(map(str, space.ratios))}")
        if any(arch.mca) and arch.kernels not in space.kernel_sets:
            raise OutsideMenu(f"{arch.key} is outside the supernet's menu: kernel set {format_kernels(arch.kernels)} "
                              f"is not one of {', '.join(space.kernel_choices)}")
        return arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        path = self.active
        if self.training and self.path_fn is not None:
            path = self.path_fn(int(self.steps))
            self.steps += 1
        return self.run_path(x, path)

    def run_path(self, x: torch.Tensor, arch: ArchConfig) -> torch.Tensor:
        """The logits of `arch`'s path: its ratio's trunk, with the MCA blocks it places."""
        trunk = self.trunks[str(arch.ratio)]
        kernels = format_kernels(arch.kernels)
        x = trunk.stem(x)
        for unit, on, mcas in zip(trunk.blocks, arch.mca, self.mcas):
            x = unit.block(x)
            if on:
                x = mcas[kernels](x)
        return self._heads[str(arch.ratio)](x)

    def path_modules(self, arch: ArchConfig) -> list[nn.Module]:
        """The modules `arch`'s path runs (its trunk, its MCA blocks): what one training step updates."""
        kernels = format_kernels(arch.kernels)
        return [self.trunks[str(arch.ratio)], *(m[kernels] for m, on in zip(self.mcas, arch.mca) if on)]

    @torch.no_grad()
    def extract(self, arch: ArchConfig) -> nn.Module:
        """`arch` as an ordinary `space` model with the weights (and BN statistics) of its path."""
        self.check(arch)
        model = build_model(arch, self.num_classes, self.input_size, mca_dropout=self.mca_dropout)
        missing, unexpected = model.load_state_dict(self.trunks[str(arch.ratio)].state_dict(), strict=False)
        assert not unexpected and all(".mca." in k for k in missing), (missing, unexpected)
        kernels = format_kernels(arch.kernels)
        for unit, mcas in zip(model.blocks, self.mcas):
            if unit.mca is not None:
                unit.mca.load_state_dict(mcas[kernels].state_dict())
        device = next(self.parameters()).device
        return model.to(device).train(self.training)

    def describe(self) -> dict[str, Any]:
        """What the supernet holds, for checkpoints and start-up lines: its menu and its size."""
        return {"space": self.space.to_dict(), "num_classes": self.num_classes, "input_size": self.input_size,
                "params": sum(p.numel() for p in self.parameters())}


def supernet_space(space: SearchSpace, width_factor: float = 1.0) -> SearchSpace:
    """`space` at `width_factor` times its width: a supernet trained at a proxy width holds proxy networks."""
    return space if width_factor == 1.0 else replace(space, width=space.width * width_factor)


__all__ = ["OutsideMenu", "Supernet", "supernet_space"]
