"""Fusion bases: what the fusion head's output is applied to, in a registry (timm's ``register_model``).

The product registers the bases it ships; an experiment registers its own from ``rtfuse_train``
(``rtfuse_train.experiments``), so that its code never ships in ``rtfuse`` nor compiles into an
engine, while its checkpoints keep loading wherever the experiment is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from rtfuse.errors import RtfuseError
from rtfuse.model.pyramid import laplacian_fusion

BaseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FusionBase:
    """``apply(vis_y, ir, head)``: the fused luminance (unclamped) from the sources' luminances and
    the head's ``head_channels`` outputs per pixel; with a zero head, the base itself."""

    name: str
    apply: BaseFn
    head_channels: int = 1

    def start(self, vis_y: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The base before any correction (a zero head): what training can pull the output towards."""
        head = vis_y.new_zeros(vis_y.shape[0], self.head_channels, *vis_y.shape[-2:])
        return self.apply(vis_y, ir, head)


_BASES: dict[str, FusionBase] = {}
# Where bases that the product does not ship are registered (named in the error when one is missing).
EXPERIMENTS_MODULE = "rtfuse_train.experiments"


def register_base(name: str, head_channels: int = 1) -> Callable[[BaseFn], BaseFn]:
    """Decorator: register ``fn(vis_y, ir, head)`` as the fusion base ``name``."""

    def add(fn: BaseFn) -> BaseFn:
        if name in _BASES:
            raise ValueError(f"fusion base {name!r} is registered already")
        _BASES[name] = FusionBase(name, fn, head_channels)
        return fn

    return add


def get_base(name: str) -> FusionBase:
    try:
        return _BASES[name]
    except KeyError:
        raise RtfuseError(f"unknown fusion base {name!r} (registered: {', '.join(_BASES)}); a base of an "
                          f"experiment loads once `import {EXPERIMENTS_MODULE}` has registered it") from None


def base_names() -> tuple[str, ...]:
    return tuple(_BASES)


# The "pyramid" base: detail chosen by its local energy in 5x5 windows, the brighter low-pass over
# 4 levels. On every held-out real set it has the better Qabf and VIF of the classical pyramid
# (per-coefficient choice, mean low-pass) and a higher SD than both it and the pixel maximum
# (experiments/log.md, "The fusion base, judged on held-out cameras").
PYRAMID_LEVELS = 4
PYRAMID_WINDOW = 5


@register_base("pyramid")
def _pyramid(vis_y: torch.Tensor, ir: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    return laplacian_fusion(vis_y, ir, PYRAMID_LEVELS, "max", PYRAMID_WINDOW) + head


@register_base("max")
def _maximum(vis_y: torch.Tensor, ir: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """The paper's intensity target; the base of every checkpoint written before 2026-12-06."""
    return torch.maximum(vis_y, ir) + head
