"""Comparison sheets: labelled image tiles in a grid, so that a person can look at what the numbers say."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

LABEL_HEIGHT = 18


def tile(img: np.ndarray, width: int, label: str) -> np.ndarray:
    """``img`` (grey or RGB uint8) scaled to ``width``, under a white band with ``label``."""
    rgb = img if img.ndim == 3 else np.repeat(img[..., None], 3, 2)
    h = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
    out = cv2.resize(rgb, (width, h), interpolation=cv2.INTER_AREA)
    band = np.full((LABEL_HEIGHT, width, 3), 255, np.uint8)
    cv2.putText(band, label[:34], (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack((band, out))


def grid(rows: Sequence[Sequence[np.ndarray]], per_row: int | None = None) -> np.ndarray:
    """Rows of equally wide tiles as one image; a row longer than ``per_row`` wraps, short ones pad white."""
    if not rows or not all(rows):
        raise ValueError("a sheet needs at least one tile in every row")
    per_row = per_row or max(len(r) for r in rows)
    lines = []
    for tiles in rows:
        height = max(t.shape[0] for t in tiles)
        padded = [np.vstack((t, np.full((height - t.shape[0], *t.shape[1:]), 255, np.uint8))) for t in tiles]
        for k in range(0, len(padded), per_row):
            chunk = padded[k : k + per_row]
            chunk += [np.full_like(chunk[0], 255)] * (per_row - len(chunk))
            lines.append(np.hstack(chunk))
    return np.vstack(lines)
