"""Reference-based statistics: CC, SCD, PSNR."""

from __future__ import annotations

import numpy as np


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation (MATLAB ``corr2``); NaN when either image is constant."""
    da = a - a.mean()
    db = b - b.mean()
    den = np.sqrt((da * da).sum() * (db * db).sum())
    return float((da * db).sum() / den) if den > 0 else float("nan")


def correlation_coefficient(ir: np.ndarray, vis: np.ndarray, fused: np.ndarray, matlab_quirk: bool = False) -> float:
    """Mean of corr(ir, F) and corr(vis, F).

    ``matlab_quirk`` keeps ``CC_evaluation.m``'s numerator for the visible term, which subtracts
    mean(ir) instead of mean(vis). Because sum(F - mean F) = 0 the quirk only moves the result
    at rounding level, but it is kept so the arithmetic is the published one.
    """
    a, b, f = (x.astype(np.float64) for x in (ir, vis, fused))
    df = f - f.mean()
    sff = (df * df).sum()
    r_af = _corr(a, f)
    b_mean_in_numerator = a.mean() if matlab_quirk else b.mean()
    den_b = np.sqrt(((b - b.mean()) ** 2).sum() * sff)
    r_bf = float(((b - b_mean_in_numerator) * df).sum() / den_b) if den_b > 0 else float("nan")
    return (r_af + r_bf) / 2.0


def scd(ir: np.ndarray, vis: np.ndarray, fused: np.ndarray) -> float:
    """Sum of the correlations of differences: corr(F - vis, ir) + corr(F - ir, vis)."""
    a, b, f = (x.astype(np.float64) for x in (ir, vis, fused))
    return _corr(f - b, a) + _corr(f - a, b)


def psnr(ir: np.ndarray, vis: np.ndarray, fused: np.ndarray, peak: float | None = None) -> float:
    """10 log10(peak^2 / MSE), MSE the mean of MSE(ir, F) and MSE(vis, F) on 0..255.

    ``peak`` defaults to 255; the Python evaluators use max(F).
    """
    a, b, f = (x.astype(np.float64) for x in (ir, vis, fused))
    mse = (np.mean((f - a) ** 2) + np.mean((f - b) ** 2)) / 2.0
    p = 255.0 if peak is None else float(peak)
    return float(10.0 * np.log10(p * p / mse)) if mse > 0 else float("inf")
