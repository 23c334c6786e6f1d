"""Colour conversions, the one home of rtfuse's luma: BT.601 full range (the JPEG convention).

Plain functions on numpy images (``rgb_to_gray``, ``luma``) and differentiable ones on (B,C,H,W)
tensors (Kornia style) share ``LUMA_WEIGHTS``: the model, the degradations, the baselines and the
evidence all see the same grey. MATLAB's ``rgb2gray`` rounds BT.601 differently; its weights live
here too, used only by the metric convention that reproduces MATLAB's published tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the tensor functions use tensor methods only: numpy users do not load torch
    import torch

_KR, _KG, _KB = 0.299, 0.587, 0.114
LUMA_WEIGHTS = (_KR, _KG, _KB)  # BT.601: rtfuse's luminance everywhere
MATLAB_LUMA_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)  # rgb2gray's, for the `matlab` metrics


def luma(img: np.ndarray, weights: tuple[float, float, float] = LUMA_WEIGHTS) -> np.ndarray:
    """HxWx3 RGB -> HxW float luma in the input's scale (float32 for float32 input, else float64)."""
    dtype = np.float32 if img.dtype == np.float32 else np.float64
    return img.astype(dtype, copy=False) @ np.asarray(weights, dtype)


def rgb_to_gray(img: np.ndarray, weights: tuple[float, float, float] = LUMA_WEIGHTS) -> np.ndarray:
    """Grey image of the input's dtype: integer inputs rounded and clipped; grey passes through."""
    if img.ndim == 2:
        return img
    f = luma(img, weights)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        return np.clip(np.round(f), info.min, info.max).astype(img.dtype)
    return f.astype(img.dtype)


# Y, Cb, Cr as rows over (R, G, B); chroma centred on 0.5 by _CHROMA_OFFSET
_YCBCR = (
    (_KR, _KG, _KB),
    (-_KR / (2 * (1 - _KB)), -_KG / (2 * (1 - _KB)), 0.5),
    (0.5, -_KG / (2 * (1 - _KR)), -_KB / (2 * (1 - _KR))),
)
_CHROMA_OFFSET = (0.0, 0.5, 0.5)
_RGB = (  # the inverse of _YCBCR
    (1.0, 0.0, 2 * (1 - _KR)),
    (1.0, -2 * (1 - _KB) * _KB / _KG, -2 * (1 - _KR) * _KR / _KG),
    (1.0, 2 * (1 - _KB), 0.0),
)


def _channel_matmul(x: torch.Tensor, matrix: tuple, offset: tuple) -> torch.Tensor:
    """(B,3,H,W) -> (B,3,H,W): each pixel's channel vector times ``matrix`` plus ``offset``."""
    m = x.new_tensor(matrix)
    return (x.movedim(1, -1) @ m.T + x.new_tensor(offset)).movedim(-1, 1)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB in [0,1] -> (B,3,H,W) Y, Cb, Cr with chroma centred on 0.5."""
    return _channel_matmul(rgb, _YCBCR, _CHROMA_OFFSET)


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    return _channel_matmul(ycbcr - ycbcr.new_tensor(_CHROMA_OFFSET).view(1, 3, 1, 1), _RGB, (0.0, 0.0, 0.0))


def as_rgb(img: torch.Tensor) -> torch.Tensor:
    """(B,1|3,H,W) -> (B,3,H,W): a grey image as a view with its channel repeated."""
    return img if img.shape[1] == 3 else img.expand(-1, 3, -1, -1)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B,1,H,W) luma; a single channel passes through."""
    if rgb.shape[1] == 1:
        return rgb
    return (_KR * rgb[:, 0:1] + _KG * rgb[:, 1:2] + _KB * rgb[:, 2:3])


def replace_luminance(rgb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """RGB with its luma replaced by ``y`` and its chroma (Cb, Cr) kept.

    Equal to ``ycbcr_to_rgb(cat(y, rgb_to_ycbcr(rgb)[:, 1:]))``: the luma weights sum to one, so
    the round trip adds the luma change to every channel. One pass that reads each input once.
    """
    return rgb + (y - luminance(rgb))
