"""Structural similarity as the two evaluators compute it.

The MATLAB code behind the published TNO table scores SSIM with MEF-SSIM (Ma et al.,
``mef_ssim.m``): F is compared with one structure built from both sources per window. The
Python evaluators sum skimage's SSIM(F, ir) + SSIM(F, vis). Both are vectorised here from
window moments instead of per-pixel loops; the tests check them against literal loop versions.
"""

from __future__ import annotations

import numpy as np

from rtfuse.metrics._filters import box_sum_valid, gaussian_1d, gaussian_valid
from rtfuse.metrics._kernels import mef_ssim_sum

MEF_WINDOW = 11
MEF_SIGMA = 1.5
MEF_K = 0.03


def mef_ssim(ir: np.ndarray, vis: np.ndarray, fused: np.ndarray) -> float:
    """MEF-SSIM of F against the two sources (11x11 Gaussian window, sigma 1.5, K = 0.03)."""
    x1, x2, f = (x.astype(np.float64) for x in (ir, vis, fused))
    n = MEF_WINDOW
    if min(f.shape) < n:
        raise ValueError(f"MEF-SSIM needs images of at least {n}x{n} pixels")
    # n^2 x (co)variance over the box window, as n^2 S(xy) - S(x) S(y) over n^2: exact
    # integers for integer images, so flat windows are exactly flat.
    s1 = box_sum_valid(x1, n)
    s2 = box_sum_valid(x2, n)
    nn = float(n * n)
    q11 = (nn * box_sum_valid(x1 * x1, n) - s1 * s1) / nn
    q22 = (nn * box_sum_valid(x2 * x2, n) - s2 * s2) / nn
    q12 = (nn * box_sum_valid(x1 * x2, n) - s1 * s2) / nn

    g = gaussian_1d(n, MEF_SIGMA)
    m1, m2, mf = (gaussian_valid(x, g) for x in (x1, x2, f))
    moments = [
        gaussian_valid(x1 * x1, g) - m1 * m1,
        gaussian_valid(x2 * x2, g) - m2 * m2,
        gaussian_valid(x1 * x2, g) - m1 * m2,
        gaussian_valid(f * f, g) - mf * mf,
        gaussian_valid(x1 * f, g) - m1 * mf,
        gaussian_valid(x2 * f, g) - m2 * mf,
    ]
    total = mef_ssim_sum(q11, q22, q12, *moments, n, (MEF_K * 255.0) ** 2)
    return total / q11.size


def ssim_skimage(a: np.ndarray, b: np.ndarray, data_range: float, win_size: int = 7) -> float:
    """skimage ``structural_similarity`` defaults: uniform window, sample covariance, K1 0.01, K2 0.03.

    skimage averages over the image cropped by half a window, i.e. over full windows only.
    """
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    if min(x.shape) < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}x{win_size} pixels")
    npx = float(win_size * win_size)
    cov_norm = npx / (npx - 1.0)
    ux = box_sum_valid(x, win_size) / npx
    uy = box_sum_valid(y, win_size) / npx
    vx = cov_norm * (box_sum_valid(x * x, win_size) / npx - ux * ux)
    vy = cov_norm * (box_sum_valid(y * y, win_size) / npx - uy * uy)
    vxy = cov_norm * (box_sum_valid(x * y, win_size) / npx - ux * uy)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean())


def ssim_sum(ir: np.ndarray, vis: np.ndarray, fused: np.ndarray, data_range: float = 2.0) -> float:
    """SSIM(F, ir) + SSIM(F, vis). ``data_range`` 2 is skimage 0.19's default for float images."""
    return ssim_skimage(fused, ir, data_range) + ssim_skimage(fused, vis, data_range)
