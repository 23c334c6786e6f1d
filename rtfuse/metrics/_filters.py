"""Windowed sums and means in MATLAB's ``filter2(..., 'valid')`` sense.

The MATLAB metrics filter with full windows only; doing the same here (instead of padding)
is what makes the numbers comparable.
"""

from __future__ import annotations

import cv2
import numpy as np


def gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """1-D factor of MATLAB's ``fspecial('gaussian', size, sigma)`` (the 2-D window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def gaussian_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Weighted window mean over every full window (separable Gaussian ``g``)."""
    r = len(g) // 2
    out = cv2.sepFilter2D(img, cv2.CV_64F, g, g, borderType=cv2.BORDER_CONSTANT)
    return out[r : img.shape[0] - r, r : img.shape[1] - r]


def box_sum_valid(img: np.ndarray, size: int) -> np.ndarray:
    """Window sums over every full ``size`` x ``size`` window (``size`` odd).

    The running sums are exact for integer-valued float64 images (below 2**53), so a flat
    window has exactly zero variance, as with MATLAB's direct sums.
    """
    r = size // 2
    out = cv2.boxFilter(img.astype(np.float64, copy=False), cv2.CV_64F, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return out[r : img.shape[0] - r, r : img.shape[1] - r]
