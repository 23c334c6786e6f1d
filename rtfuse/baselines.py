"""Classical fusion baselines: pixel-wise max, mean, and a Laplacian pyramid.

They belong beside every learned method in an evaluation: on TNO, max(ir, vis) beats every
published network on Qabf, VIF and MI, so a method that does not beat them has not earned its cost.
All take visible RGB or grey and infrared grey (uint8, or uint16 via AGC) and return grey uint8.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from rtfuse.color import rgb_to_gray
from rtfuse.imageio import check_same_size, to_float01
from rtfuse.model.pyramid import laplacian_fusion


def _gray_sources(vis: np.ndarray, ir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sources as float32 grey on 0..255."""
    check_same_size(vis, ir)
    v = to_float01(rgb_to_gray(vis)) * 255.0
    i = to_float01(rgb_to_gray(ir)) * 255.0
    return v, i


def gray_tensors(vis: np.ndarray, ir: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sources as (1,1,H,W) float32 grey tensors on 0..255, for the pyramid ops."""
    v, i = _gray_sources(vis, ir)
    return torch.from_numpy(v)[None, None], torch.from_numpy(i)[None, None]


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def fuse_max(vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Brighter source per pixel: keeps hot targets and lit detail."""
    v, i = _gray_sources(vis, ir)
    return to_uint8(np.maximum(v, i))


def fuse_mean(vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Average of the sources: the no-decision reference (halves the contrast of each)."""
    v, i = _gray_sources(vis, ir)
    return to_uint8((v + i) / 2.0)


def fuse_laplacian(vis: np.ndarray, ir: np.ndarray, max_levels: int = 4, low_pass: str = "mean") -> np.ndarray:
    """Laplacian pyramid fusion: the stronger detail (max |coefficient|) per level, mean base
    (``low_pass="max"``: the brighter base)."""
    return to_uint8(laplacian_fusion(*gray_tensors(vis, ir), max_levels, low_pass)[0, 0].numpy())


BASELINES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {"max": fuse_max, "mean": fuse_mean, "laplacian": fuse_laplacian}
