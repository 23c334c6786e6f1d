"""Infrared-to-visible rig calibration: a homography estimated from frame pairs, stored as TOML.

Two lenses side by side see the scene through (approximately) a homography; the registration that
estimates it aligns structure, not intensity (see ``register.py``).

- ``calibration.py``: :class:`Calibration` (checking sizes, warping, TOML save/load),
  :class:`RegistrationStats`, ``FORMAT_VERSION``
- ``register.py``: :func:`estimate` (several pairs, consensus, acceptance thresholds such as
  ``MIN_EDGE_CORRELATION``), :func:`register_pair` (NGF search and optimisation, block fit),
  :func:`intensity_homography` (the same-modality reference), :func:`corner_error`
- ``local.py``: the fine level's block shifts and Cauchy-weighted homography fit
- ``target.py``: :func:`estimate_from_target`, the target-based method (:class:`Target`: chessboard
  or asymmetric circle grid, found in both modalities, either polarity)
- ``synthetic.py``: known geometry to check a method against (:func:`draw_warp`, rendered target rigs)
- ``frames.py``: :func:`load_pairs`, frame pairs from files, folders or videos
- ``overlay.py``: :func:`edge_overlay`, an image to judge an alignment by eye
"""

from __future__ import annotations

from rtfuse.calib.calibration import FORMAT_VERSION, Calibration, RegistrationStats, Size
from rtfuse.calib.frames import load_pairs
from rtfuse.calib.overlay import edge_overlay
from rtfuse.calib.register import (
    CONSENSUS_TOLERANCE_PX,
    MIN_EDGE_CORRELATION,
    MIN_EDGE_STEP,
    MIN_PEAK_CONTRAST,
    MIN_STRUCTURE_FRACTION,
    PairResult,
    corner_error,
    estimate,
    intensity_homography,
    register_pair,
)
from rtfuse.calib.target import Target, estimate_from_target

__all__ = [
    "CONSENSUS_TOLERANCE_PX", "FORMAT_VERSION", "MIN_EDGE_CORRELATION", "MIN_EDGE_STEP", "MIN_PEAK_CONTRAST",
    "MIN_STRUCTURE_FRACTION", "Calibration", "PairResult", "RegistrationStats", "Size", "Target", "corner_error",
    "edge_overlay", "estimate", "estimate_from_target", "intensity_homography", "load_pairs", "register_pair",
]
