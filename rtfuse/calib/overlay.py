"""An edge overlay for a person to judge an alignment (``rtfuse calib --check``)."""

from __future__ import annotations

import cv2
import numpy as np

from rtfuse.color import rgb_to_gray
from rtfuse.imageio import to_float01


def edge_overlay(vis: np.ndarray, ir_warped: np.ndarray) -> np.ndarray:
    """RGB image for a person to judge alignment: visible edges green, IR edges magenta, both white."""
    base = (0.35 * _edge_source(vis)).astype(np.uint8)
    ev, ei = _edges(vis), _edges(ir_warped)
    out = np.stack([base, base, base], axis=-1)
    out[ev] = (0, 255, 0)
    out[ei] = (255, 0, 255)
    out[ev & ei] = (255, 255, 255)
    return out


def _edge_source(img: np.ndarray) -> np.ndarray:
    g = rgb_to_gray(img) if img.ndim == 3 else img
    return np.clip(to_float01(g) * 255.0, 0, 255).astype(np.uint8)


def _edges(img: np.ndarray) -> np.ndarray:
    """Canny on a contrast-equalised image, so dark night frames still show their edges."""
    g = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(_edge_source(img))
    return cv2.Canny(cv2.GaussianBlur(g, (0, 0), 1.5), 40, 100) > 0
