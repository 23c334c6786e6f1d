"""Histogram metrics: entropy (EN) and mutual information (MI) on 8-bit images."""

from __future__ import annotations

import numpy as np


def _entropy_of_counts(counts: np.ndarray, base: float) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(base))


def entropy(img: np.ndarray, base: float = 2.0) -> float:
    """Shannon entropy of the 256-bin histogram of a uint8 image (MATLAB ``entropy``)."""
    return _entropy_of_counts(np.bincount(img.ravel(), minlength=256), base)


def joint_entropy(a: np.ndarray, b: np.ndarray, base: float = 2.0, merge_top_bin: bool = False) -> float:
    """Entropy of the 256x256 joint histogram of two uint8 images.

    ``merge_top_bin`` reproduces ``Hab.m``: it adds 1 to uint8 images before indexing, so 255
    saturates and the grey levels 254 and 255 share one bin.
    """
    ia = a.ravel().astype(np.uint16)
    ib = b.ravel().astype(np.uint16)
    if merge_top_bin:
        np.minimum(ia, 254, out=ia)
        np.minimum(ib, 254, out=ib)
    return _entropy_of_counts(np.bincount((ia << 8) | ib, minlength=65536), base)


def mutual_information(
    ir: np.ndarray, vis: np.ndarray, fused: np.ndarray, base: float = 2.0, merge_top_bin: bool = False
) -> float:
    """MI(ir, F) + MI(vis, F) from 256-bin histograms of uint8 images (base 2: bits, e: nats)."""
    hf = entropy(fused, base)
    total = 0.0
    for src in (ir, vis):
        total += entropy(src, base) + hf - joint_entropy(fused, src, base, merge_top_bin)
    return total
