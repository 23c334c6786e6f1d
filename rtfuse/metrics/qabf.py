"""Qabf (Xydeas & Petrovic): how much of the sources' Sobel edge strength and orientation survives in F."""

from __future__ import annotations

import numpy as np

from rtfuse.metrics._kernels import qabf_sums


def qabf(ir: np.ndarray, vis: np.ndarray, fused: np.ndarray) -> float:
    """Edge-strength weighted mean of the per-pixel edge preservation Q^{AF}, Q^{BF} (``analysis_Qabf.m``).

    Sobel via conv2 'same' (zero padding), orientation atan(gy/gx) (modulo pi, pi/2 where
    gx = 0), not atan2. Where a source and F have exactly equal strength the file uses the
    strength itself as the ratio instead of 1; that quirk is kept, so the grey scale of the
    input matters (the MATLAB table used im2double images, 0..1).
    """
    padded = [np.pad(x.astype(np.float64), 1) for x in (ir, vis, fused)]
    num, den = qabf_sums(padded[0], padded[1], padded[2])
    return num / den if den > 0 else float("nan")
