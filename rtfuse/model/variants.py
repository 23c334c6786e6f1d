"""Model variants: what an experiment changes in a built network through hooks (state dict unchanged).

A configuration lists its variants in ``extra["variants"]``; ``FusionNet`` applies them when it is
built. The product registers none: experiments register theirs from ``rtfuse_train.experiments``,
so that their checkpoints load there without their code living in ``rtfuse``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

from rtfuse.errors import RtfuseError
from rtfuse.model.bases import EXPERIMENTS_MODULE

Variant = Callable[[nn.Module], None]
_VARIANTS: dict[str, Variant] = {}


def register_variant(name: str) -> Callable[[Variant], Variant]:
    """Decorator: register ``fn(model)``, which changes a built ``FusionNet`` in place, as ``name``."""

    def add(fn: Variant) -> Variant:
        if name in _VARIANTS:
            raise ValueError(f"model variant {name!r} is registered already")
        _VARIANTS[name] = fn
        return fn

    return add


def apply_variants(model: nn.Module, names: Iterable[str]) -> None:
    for name in names:
        if name not in _VARIANTS:
            raise RtfuseError(f"unknown model variant {name!r}; a variant of an experiment loads once "
                              f"`import {EXPERIMENTS_MODULE}` has registered it")
        _VARIANTS[name](model)
