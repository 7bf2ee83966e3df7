"""`ghostify`: turn the convolutions of an existing network into Ghost modules.

The GhostNet paper (Han et al. 2020, Sec. 4.1) shows the Ghost module as a
plug-in replacement for the convolutions of VGG-16, ResNet-56 and ResNet-50.
`ghostify` does that replacement on any torch model, in place of every
`nn.Conv2d` that `keep` does not protect:

- the primary conv keeps the replaced conv's kernel, stride, padding,
  dilation and bias and makes m = ceil(n / s) intrinsic maps;
- a cheap d x d depthwise conv (stride 1, 'same' padding) makes s - 1 ghost
  maps from each intrinsic map; both are concatenated and cut to n.

`GhostConv2d` has *no* BN or ReLU of its own (unlike `space.ghost.GhostModule`,
the building block of GhostNet's bottlenecks): it stands in for a bare
`nn.Conv2d`, and the network's own BN / ReLU after that conv still follow it.
Adding a BN + ReLU inside would normalise twice and put a ReLU before the
residual sum where the original network has none (ResNet's last conv of a
block).  This matches Huawei's released Ghost-ResNet-50, whose GhostModule's
forward is conv -> depthwise conv -> concat, and it reproduces the paper's
counts within 2 % but for two MAC figures the paper itself cannot have
measured with d = 3 (tests/test_backbones.py says which and why).

Which convs stay plain (`keep`, default `keep_stem_and_grouped`):
- the stem, recognised as a conv reading 3 input channels: it is a small
  share of the weights, and ghosting 3 -> 64 maps would derive half of the
  first features from a handful of intrinsic ones for almost no saving
  (Huawei's Ghost-ResNet-50 keeps its 7x7 stem plain too);
- depthwise / grouped convs: they are already as cheap as the cheap op,
  and a Ghost module's primary conv is dense by definition.  They are never
  replaced, whatever `keep` says.

`linear=True` also replaces `nn.Linear` layers (a classifier is a 1x1 conv
on a 1x1 map) by `GhostLinear`.  Off by default: the paper speaks of
convolutions.  But its ImageNet Ghost-ResNet-50 parameter counts (13.0 M at
s = 2, 6.5 M at s = 4, Table 6) are only reached with the 2048 -> 1000
classifier ghosted as well (a plain classifier alone holds 2.05 M), so the
`resnet50` backbone turns it on (see `space.backbones`).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Collection

import torch
from torch import nn

from .ghost import GhostModule, ghost_maps
from .mca import MCA

Keep = Callable[[str, nn.Module], bool]
"""Decides, from a layer's dotted name and the layer (a Conv2d or Linear), that it stays plain."""


class GhostConv2d(nn.Module):
    """A drop-in for one `nn.Conv2d`: primary conv (m maps) + depthwise cheap op (the rest).

    Same in/out channels, kernel, stride, padding and dilation as `conv`, so
    the output shape is the replaced conv's for every input.  With ratio 1
    there is no cheap op and the module is the primary conv alone.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int] = 1, ratio: int = 2,
                 dw_size: int = 3, **conv: Any) -> None:
        """`conv`: the primary conv's other `nn.Conv2d` arguments (stride, padding, dilation, bias, padding_mode)."""
        super().__init__()
        if ratio < 1:
            raise ValueError(f"GhostConv2d ratio must be >= 1; got {ratio}")
        if dw_size < 1 or dw_size % 2 == 0:
            raise ValueError(f"GhostConv2d dw_size must be an odd int >= 1; got {dw_size}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.ratio = ratio
        self.dw_size = dw_size
        self.init_channels = math.ceil(out_channels / ratio)
        self.primary_conv = nn.Conv2d(in_channels, self.init_channels, kernel_size, **{"bias": False, **conv})
        ghost_channels = self.init_channels * (ratio - 1)
        self.cheap_operation = (
            nn.Conv2d(self.init_channels, ghost_channels, dw_size, 1, dw_size // 2,
                      groups=self.init_channels, bias=False)
            if ratio > 1 else None
        )

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, ratio: int, dw_size: int) -> "GhostConv2d":
        """The Ghost replacement of `conv` (fresh weights: it is a different layer)."""
        if conv.groups != 1:
            raise ValueError(f"only dense convs (groups=1) can become Ghost modules; got groups={conv.groups}")
        module = cls(conv.in_channels, conv.out_channels, conv.kernel_size, ratio, dw_size, stride=conv.stride,
                     padding=conv.padding, dilation=conv.dilation, bias=conv.bias is not None,
                     padding_mode=conv.padding_mode)
        return module.to(device=conv.weight.device, dtype=conv.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ghost_maps(self.primary_conv(x), self.cheap_operation, self.out_channels)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.primary_conv.kernel_size}, "
                f"stride={self.primary_conv.stride}, ratio={self.ratio}, dw_size={self.dw_size}")


class GhostLinear(nn.Module):
    """A drop-in for one `nn.Linear`: a Linear to m = ceil(n/s) features + per-feature cheap ghosts.

    A classifier is a 1x1 conv on a 1x1 map; there the cheap d x d
    depthwise op reduces to its centre tap, i.e. s - 1 learned scales of
    each intrinsic feature, so that is what it holds (no dead d^2 - 1 taps).
    Works on (..., in_features) inputs like `nn.Linear`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, ratio: int = 2) -> None:
        super().__init__()
        if ratio < 2:
            raise ValueError(f"GhostLinear ratio must be >= 2 (1 is the plain Linear); got {ratio}")
        self.in_features = in_features
        self.out_features = out_features
        self.ratio = ratio
        self.init_features = math.ceil(out_features / ratio)
        self.primary = nn.Linear(in_features, self.init_features, bias=bias)
        self.cheap_operation = nn.Conv2d(self.init_features, self.init_features * (ratio - 1), 1,
                                         groups=self.init_features, bias=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, ratio: int) -> "GhostLinear":
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, ratio=ratio)
        return module.to(device=linear.weight.device, dtype=linear.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary(x)
        lead = intrinsic.shape[:-1]
        ghosts = self.cheap_operation(intrinsic.reshape(-1, self.init_features, 1, 1))
        out = torch.cat([intrinsic, ghosts.reshape(*lead, -1)], dim=-1)
        return out[..., : self.out_features]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, ratio={self.ratio}"


def keep_stem_and_grouped(name: str, layer: nn.Module) -> bool:
    """Default `keep`: convs reading the 3-channel image, and grouped / depthwise convs."""
    return isinstance(layer, nn.Conv2d) and (layer.in_channels == 3 or layer.groups != 1)


def keep_none(name: str, layer: nn.Module) -> bool:
    """A `keep` that ghosts every dense conv, the stem included (grouped convs still stay)."""
    return False


def keep_names(names: Collection[str]) -> Keep:
    """A `keep` that protects exactly the layers with these dotted names (grouped convs stay anyway)."""
    chosen = frozenset(names)
    return lambda name, layer: name in chosen


def _leave_alone(layer: nn.Module) -> bool:
    """Layers ghostify never looks inside: Ghost modules already (no ghosts of ghosts) and MCA blocks.

    MCA's 1x1 convs (q, k, v, projection) compute attention; they are not
    the feature convs the Ghost paper replaces.
    """
    return isinstance(layer, (GhostConv2d, GhostLinear, GhostModule, MCA))


def _replacement(layer: nn.Module, ratio: int, dw_size: int, linear: bool) -> nn.Module | None:
    """The Ghost stand-in for `layer`, or None when it is not a layer ghostify replaces."""
    if type(layer) is nn.Conv2d and layer.groups == 1:
        return GhostConv2d.from_conv(layer, ratio, dw_size)
    if linear and type(layer) is nn.Linear:
        return GhostLinear.from_linear(layer, ratio)
    return None


def ghostify(model: nn.Module, ratio: int, dw_size: int = 3, keep: Keep | Collection[str] | None = None,
             linear: bool = False) -> nn.Module:
    """Replace, in place, every dense `nn.Conv2d` of `model` not kept by a `GhostConv2d`; return `model`.

    `keep` is a predicate `(name, layer) -> bool` or a collection of dotted
    layer names (`keep_names`); None means `keep_stem_and_grouped`.  Grouped
    convs are never replaced, whatever `keep` says, and neither are
    subclasses of Conv2d / Linear (they are someone's special layer), nor
    anything inside a Ghost module or an MCA block (`_leave_alone`), so
    ghostifying twice changes nothing.
    `linear=True` replaces the `nn.Linear` layers not kept as well
    (`GhostLinear`).  `ratio` 1 returns the model untouched (a Ghost module
    with s = 1 is the plain conv).  Replacements are new, untrained modules
    on the replaced layer's device and dtype; everything else keeps its
    weights.  A bare `nn.Conv2d` passed as `model` is returned replaced.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 1:
        raise ValueError(f"ghostify ratio must be an int >= 1; got {ratio!r}")
    if isinstance(dw_size, bool) or not isinstance(dw_size, int) or dw_size < 1 or dw_size % 2 == 0:
        raise ValueError(f"ghostify dw_size must be an odd int >= 1; got {dw_size!r}")
    if ratio == 1:
        return model
    if keep is None:
        keep = keep_stem_and_grouped
    elif not callable(keep):
        keep = keep_names(keep)
    # Collect first, then swap: replacing while iterating named_modules would walk the new modules.
    targets = []
    skip: list[str] = []  # prefixes of modules left alone
    for name, layer in model.named_modules():
        if any(name.startswith(prefix) for prefix in skip):
            continue
        if _leave_alone(layer):
            skip.append(f"{name}." if name else "")
            continue
        new = None if keep(name, layer) else _replacement(layer, ratio, dw_size, linear)
        if new is not None:
            targets.append((name, new))
    for name, new in targets:
        if not name:
            return new
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, new)
    return model
