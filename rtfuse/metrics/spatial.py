"""No-reference statistics of the fused image: SD, SF, AG (all rise with noise)."""

from __future__ import annotations

import numpy as np


def standard_deviation(img: np.ndarray, uint8_arithmetic: bool = False) -> float:
    """Population standard deviation of the grey levels.

    ``uint8_arithmetic`` reproduces ``SD_evaluation.m`` run on a uint8 image, as behind the
    published TNO table: F - mean(F) and its square saturate to 0..255, so only pixels above
    the mean count and the result cannot exceed sqrt(255).
    """
    f = img.astype(np.float64)
    if uint8_arithmetic:
        dev = np.clip(np.floor(f - f.mean() + 0.5), 0.0, 255.0)  # MATLAB rounds half away from zero
        return float(np.sqrt(np.minimum(dev * dev, 255.0).mean()))
    return float(np.std(f))


def squared_differences(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared vertical and horizontal first differences: SF's per-pixel terms."""
    f = img.astype(np.float64)
    return np.diff(f, axis=0) ** 2, np.diff(f, axis=1) ** 2


def spatial_frequency(img: np.ndarray) -> float:
    """sqrt(RF^2 + CF^2): RMS of vertical and of horizontal first differences."""
    rows, cols = squared_differences(img)
    return float(np.sqrt(rows.mean() + cols.mean()))


def gradient_map(img: np.ndarray) -> np.ndarray:
    """sqrt((gx^2 + gy^2) / 2) per pixel with MATLAB ``gradient`` (central inside, one-sided at
    the edges): AG's per-pixel term."""
    f = img.astype(np.float64)
    if min(f.shape) < 2:
        raise ValueError("average gradient needs an image of at least 2x2 pixels")
    gy, gx = np.gradient(f)
    return np.sqrt((gx * gx + gy * gy) / 2.0)


def average_gradient(img: np.ndarray, matlab_divisor: bool = True) -> float:
    """Mean of sqrt((gx^2 + gy^2) / 2).

    ``matlab_divisor`` divides the sum by (rows-1)(cols-1) as ``AG_evaluation.m`` does
    (slightly larger than the plain mean the Python evaluators use).
    """
    s = gradient_map(img)
    if matlab_divisor:
        return float(s.sum() / ((s.shape[0] - 1) * (s.shape[1] - 1)))
    return float(s.mean())
