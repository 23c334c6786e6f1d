"""A labelled gallery of degradations: one row per kind, columns clean and each severity."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from rtfuse.degrade.apply import _to_unit_float, degrade_pair
from rtfuse.degrade.registry import COMPOSITES, DEGRADATIONS

GALLERY_ROWS = (*DEGRADATIONS, *COMPOSITES)


def _label(img: np.ndarray, text: str, scale: float) -> None:
    """Draw white text with a dark outline at the top-left of an RGB uint8 tile, in place."""
    org = (4, int(18 * scale) + 2)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (255, 255, 255), 1, cv2.LINE_AA)


def render_gallery(
    vis: np.ndarray,
    ir: np.ndarray,
    rows: Sequence[str] = GALLERY_ROWS,
    severities: Sequence[float] = (0.3, 0.6, 0.9),
    seed: int = 0,
    tile_width: int = 240,
    progress: Callable[[Iterable[str]], Iterable[str]] = iter,
) -> np.ndarray:
    """A labelled RGB uint8 grid: one row per kind, columns clean + each severity, vis beside ir.

    The pair is resized to ``tile_width`` first, so the gallery shows what the degradations do at
    a typical training-crop scale. ``progress`` wraps the row iteration (e.g. a tqdm bar).
    """
    vis_f, ir_f = _to_unit_float(vis, "visible"), _to_unit_float(ir, "infrared")
    h = max(1, round(vis_f.shape[0] * tile_width / vis_f.shape[1]))
    vis_f = cv2.resize(vis_f, (tile_width, h), interpolation=cv2.INTER_AREA)
    ir_f = cv2.resize(ir_f, (tile_width, h), interpolation=cv2.INTER_AREA)
    scale = max(0.6, tile_width / 240)
    header_h, gap = int(28 * scale), 4
    cols = [None, *severities]
    width = len(cols) * (2 * tile_width + gap) + gap
    height = header_h + len(rows) * (h + gap) + gap
    canvas = np.full((height, width, 3), 40, np.uint8)
    for c, sev in enumerate(cols):
        x = gap + c * (2 * tile_width + gap)
        title = "clean (vis | ir)" if sev is None else f"severity {sev:g}"
        cv2.putText(canvas, title, (x + 4, header_h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, (255, 255, 255), 1, cv2.LINE_AA)
    for r, kind in enumerate(progress(rows)):
        y = header_h + r * (h + gap)
        for c, sev in enumerate(cols):
            x = gap + c * (2 * tile_width + gap)
            v, i = (vis_f, ir_f) if sev is None else degrade_pair(vis_f, ir_f, [(kind, sev)], seed)
            tile_v = np.round(v * 255).astype(np.uint8)
            tile_i = np.repeat(np.round(i * 255).astype(np.uint8)[..., None], 3, axis=2)
            if c == 0:
                _label(tile_v, kind, scale)
            canvas[y : y + h, x : x + tile_width] = tile_v
            canvas[y : y + h, x + tile_width : x + 2 * tile_width] = tile_i
    return canvas
