"""Differentiable colour conversions (BT.601 full range, the JPEG convention), Kornia style."""

from __future__ import annotations

import torch

_KR, _KG, _KB = 0.299, 0.587, 0.114
LUMA_WEIGHTS = (_KR, _KG, _KB)  # BT.601: the model's luminance


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB in [0,1] -> (B,3,H,W) Y, Cb, Cr with chroma centred on 0.5."""
    r, g, b = rgb.unbind(1)
    y = _KR * r + _KG * g + _KB * b
    cb = (b - y) / (2 * (1 - _KB)) + 0.5
    cr = (r - y) / (2 * (1 - _KR)) + 0.5
    return torch.stack((y, cb, cr), 1)


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    y, cb, cr = ycbcr.unbind(1)
    cb, cr = cb - 0.5, cr - 0.5
    r = y + 2 * (1 - _KR) * cr
    b = y + 2 * (1 - _KB) * cb
    g = (y - _KR * r - _KB * b) / _KG
    return torch.stack((r, g, b), 1)


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
