"""Image-fusion quality metrics (EN, SD, SF, AG, MI, VIF, Qabf, SSIM, SCD, CC, PSNR).

Plain numpy functions on grey 0..255 images, grouped into named conventions (``cddfuse``, the
default, ``matlab`` and ``matlab-uint8``) because published tables differ by convention, not only
by method. The default's Qabf has no equal-strength quirk (which punishes copying a source pixel);
``matlab`` reproduces the published TNO table, quirks included, and is for that only.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from rtfuse import defaults
from rtfuse.errors import RtfuseError
from rtfuse.metrics.conventions import CONVENTIONS, METRIC_NAMES, Convention

__all__ = ["CONVENTIONS", "DEFAULT_CONVENTION", "METRIC_NAMES", "Convention", "compute_metrics", "get_convention",
           "resolve_names"]

DEFAULT_CONVENTION = defaults.METRIC_CONVENTION


def get_convention(name: str) -> Convention:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise RtfuseError(f"unknown metric convention {name!r}; choose from {', '.join(CONVENTIONS)}") from None


def resolve_names(names: Iterable[str] | None) -> list[str]:
    """Canonical metric names in table order; case-insensitive, unknown names refused."""
    if names is None:
        return list(METRIC_NAMES)
    lookup = {m.lower(): m for m in METRIC_NAMES}
    wanted = []
    for n in names:
        if n.lower() not in lookup:
            raise RtfuseError(f"unknown metric {n!r}; choose from {', '.join(METRIC_NAMES)}")
        wanted.append(lookup[n.lower()])
    return [m for m in METRIC_NAMES if m in wanted]


def compute_metrics(
    ir: np.ndarray,
    vis: np.ndarray,
    fused: np.ndarray,
    convention: str = DEFAULT_CONVENTION,
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """Score one fused image against its two sources.

    Inputs are uint8 (or float 0..255) grey (H,W) or RGB (H,W,3); RGB is converted the way the
    convention's evaluator converts it, and histogram metrics round float input to uint8.
    Returns {metric: value} in table order.
    """
    conv = get_convention(convention)
    a, b, f = (conv.to_gray(np.asarray(x)) for x in (ir, vis, fused))
    if not (a.shape == b.shape == f.shape):
        raise RtfuseError(f"size mismatch: ir {a.shape[::-1]}, vis {b.shape[::-1]}, fused {f.shape[::-1]} (WxH)")
    return {m: float(conv.metrics[m](a, b, f)) for m in resolve_names(names)}
