"""Named metric conventions: which formula variant, grey conversion and scale each metric uses.

Published fusion tables disagree mostly because of these choices, so a convention is chosen by
name and reported next to every number.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from rtfuse.color import MATLAB_LUMA_WEIGHTS, luma, rgb_to_gray
from rtfuse.metrics.correlation import correlation_coefficient, psnr, scd
from rtfuse.metrics.information import entropy, mutual_information
from rtfuse.metrics.qabf import qabf
from rtfuse.metrics.spatial import average_gradient, spatial_frequency, standard_deviation
from rtfuse.metrics.ssim import mef_ssim, ssim_sum
from rtfuse.metrics.vif import vif

METRIC_NAMES = ("EN", "SD", "SF", "AG", "MI", "VIF", "Qabf", "SSIM", "SCD", "CC", "PSNR")

MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def _quantise(img: np.ndarray) -> np.ndarray:
    """uint8 view of a 0..255 grey image for histogram metrics (round, clip)."""
    if img.dtype == np.uint8:
        return img
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _matlab_gray(img: np.ndarray) -> np.ndarray:
    """MATLAB's ``rgb2gray`` (its rounding of BT.601), as the published table's code converted."""
    return rgb_to_gray(img, MATLAB_LUMA_WEIGHTS)


def _cv2_gray(img: np.ndarray) -> np.ndarray:
    """``np.round(cv2.cvtColor(float BGR, BGR2GRAY))`` of the Python evaluator, from RGB."""
    if img.ndim == 2:
        return img
    return np.round(luma(img.astype(np.float64)))


def _on_uint8(fn: Callable[..., float]) -> MetricFn:
    return lambda a, b, f: fn(_quantise(a), _quantise(b), _quantise(f))


@dataclass(frozen=True)
class Convention:
    """A grey conversion plus one function (ir, vis, fused) -> float per metric, on 0..255 grey
    (uint8, or float that histogram metrics round)."""

    name: str
    description: str
    to_gray: Callable[[np.ndarray], np.ndarray]
    metrics: dict[str, MetricFn]


# The metrics that both reference implementations compute alike.
_COMMON: dict[str, MetricFn] = {
    "EN": lambda a, b, f: entropy(_quantise(f)),
    "SD": lambda a, b, f: standard_deviation(f),
    "SF": lambda a, b, f: spatial_frequency(f),
    "VIF": vif,
    "SCD": scd,
}

_MATLAB: dict[str, MetricFn] = {
    **_COMMON,
    "AG": lambda a, b, f: average_gradient(f, matlab_divisor=True),
    "MI": _on_uint8(partial(mutual_information, base=2.0, merge_top_bin=True)),
    # analysis_Reference.m passes im2double images (0..1) to Qabf; the scale matters
    # through the equal-strength quirk kept in qabf().
    "Qabf": lambda a, b, f: qabf(a / 255.0, b / 255.0, f / 255.0),
    "SSIM": mef_ssim,
    "CC": partial(correlation_coefficient, matlab_quirk=True),
    # PSNR_evaluation.m divides im2double images by 255 again yet keeps peak 255: the
    # published PSNR is the usual one plus 20 log10(255) = 48.13 dB.
    "PSNR": partial(psnr, peak=255.0 * 255.0),
}

CONVENTIONS: dict[str, Convention] = {c.name: c for c in (
    Convention(
        "cddfuse", "Python evaluator of MMIF-CDDFuse (utils/Evaluator.py), reused by most deep-learning papers",
        _cv2_gray,
        {
            **_COMMON,
            "Qabf": qabf,
            "AG": lambda a, b, f: average_gradient(f, matlab_divisor=False),
            "MI": _on_uint8(partial(mutual_information, base=np.e, merge_top_bin=False)),
            "SSIM": partial(ssim_sum, data_range=2.0),
            "CC": partial(correlation_coefficient, matlab_quirk=False),
            "PSNR": lambda a, b, f: psnr(a, b, f, peak=float(np.max(f))),
        },
    ),
    Convention("matlab", "MATLAB code behind the published TNO table (Linfeng-Tang/Image-Fusion), quirks kept",
               _matlab_gray, _MATLAB),
    Convention(
        "matlab-uint8",
        "matlab, plus the saturating uint8 arithmetic that SD and VIF hit in the published TNO table",
        _matlab_gray,
        {
            **_MATLAB,
            "SD": lambda a, b, f: standard_deviation(f, uint8_arithmetic=True),
            "VIF": partial(vif, uint8_products=True),
        },
    ),
)}
