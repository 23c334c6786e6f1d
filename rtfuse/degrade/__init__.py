"""Physically grounded degradations of a registered infrared/visible pair.

Training, the robustness mode of the evaluator and the synthetic source need degraded inputs whose
clean references are known. Each degradation models the physics that causes it (atmospheric
scattering, photon shot noise, lens bloom, rain streaks, microbolometer fixed-pattern noise, optical
blur) with one ``severity`` in [0, 1] (0 = identity) and a seed, so that results are reproducible.

One implementation serves both APIs: the kernels work on batched torch tensors (B,3,H,W)/(B,1,H,W)
with per-sample severities, and :func:`degrade_pair` wraps them for a single numpy pair. Rain and
blur draw with OpenCV per sample (they are cheap there and awkward to vectorise).

- ``physics.py``: the torch kernels (haze, low light, overexposure, noise), their constants and
  helpers (linear light, :func:`smooth`, :func:`depth_proxy`, :func:`overexposure_gain`)
- ``per_sample.py``: the OpenCV kernels run per sample (rain streaks, motion and defocus blur)
- ``registry.py``: :class:`DegradationKind`, ``DEGRADATIONS``, ``COMPOSITES``, ``CLASSES``, spec
  parsing and normalising, :func:`class_targets`
- ``apply.py``: the entry points :func:`degrade_pair` (numpy) and :func:`degrade_batch` (tensors)
- ``gallery.py``: :func:`render_gallery`, the labelled grid of ``rtfuse degrade``
"""

from __future__ import annotations

from rtfuse.degrade.apply import degrade_batch, degrade_pair
from rtfuse.degrade.gallery import GALLERY_ROWS, render_gallery
from rtfuse.degrade.per_sample import RAIN_ANGLE_DEG, disk_kernel, motion_kernel, rain_layer
from rtfuse.degrade.physics import (
    BLOOM_SIGMAS,
    HAZE_BETA_MAX,
    IR_HAZE_RATIO,
    LOW_LIGHT_K_MIN,
    OVEREXPOSURE_CLIP,
    OVEREXPOSURE_GAIN_CAP,
    Kernel,
    depth_proxy,
    overexposure_gain,
    smooth,
)
from rtfuse.degrade.registry import (
    CLASSES,
    COMPOSITES,
    DEGRADATIONS,
    DegradationKind,
    Spec,
    class_targets,
    normalise_spec,
    parse_spec,
)

__all__ = [
    "BLOOM_SIGMAS", "CLASSES", "COMPOSITES", "DEGRADATIONS", "GALLERY_ROWS", "HAZE_BETA_MAX", "IR_HAZE_RATIO",
    "LOW_LIGHT_K_MIN", "OVEREXPOSURE_CLIP", "OVEREXPOSURE_GAIN_CAP", "RAIN_ANGLE_DEG", "DegradationKind", "Kernel",
    "Spec", "class_targets", "degrade_batch", "degrade_pair", "depth_proxy", "disk_kernel", "motion_kernel",
    "normalise_spec", "overexposure_gain", "parse_spec", "rain_layer", "render_gallery", "smooth",
]
