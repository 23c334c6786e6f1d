"""Physical evidence, from one visible frame, that a PKDM stage (dehaze, low light, derain) should act.

The learned degradation vector is trained on one camera's synthetic degradations and misreads other
cameras (a crisp daytime frame called hazy, a smoky clip called clean). These statistics come from
image physics and transfer across cameras: each maps to a gate in [0,1] by a clipped linear ramp
whose lower end lies above every clean daytime frame of four cameras (MSRS, RoadScene, TNO, M2VD;
``tests/data/clean_daytime.txt``), so on a clean frame the gate is exactly 0 and the stage is the
identity. They run once per clip, on the frame shrunk to a short side of 256 (about 10 ms).

Plain numpy + OpenCV functions on a float frame in [0,1], HxWx3 RGB or HxW grey.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from rtfuse.color import luma

WORK_SHORT_SIDE = 256
# (statistic at gate 0, statistic at gate 1) of each ramp; the low-light ramp falls with brightness.
HAZE_RAMP = (0.55, 0.68)  # veil: clean daytime frames reach 0.50 (RoadScene's washed-out camera)
DARK_RAMP = (0.12, 0.05)  # brightness: real night frames stay above 0.13 (MSRS, LLVIP), clean daytime above 0.57
RAIN_RAMP = (1.7, 2.5)  # streak ratio: clean frames reach 1.6 (a birch forest), most stay below 1.1


def ramp(value: float, at_zero: float, at_one: float) -> float:
    """0 at ``at_zero``, 1 at ``at_one``, linear between and clipped (falls when at_one < at_zero)."""
    return float(np.clip((value - at_zero) / (at_one - at_zero), 0.0, 1.0))


def working_frame(img: np.ndarray, short_side: int = WORK_SHORT_SIDE) -> np.ndarray:
    """HxWx3 float32 in [0,1], area-shrunk to ``short_side`` (never enlarged); grey gets 3 equal channels."""
    x = np.asarray(img, np.float32)
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=2)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected an HxW or HxWx3 frame, got shape {x.shape}")
    h, w = x.shape[:2]
    f = short_side / min(h, w)
    if f < 1.0:
        x = cv2.resize(x, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return np.clip(x, 0.0, 1.0)


def haze_veil(x: np.ndarray, patch_frac: float = 0.04) -> float:
    """The veil ``1 - t`` of the scattering model ``I = J t + A (1 - t)``, relative to the airlight.

    Dark channel prior (He et al. 2009): in a haze-free scene nearly every patch holds a pixel dark
    in some colour channel, so the patch minimum of min(R, G, B) is near 0; airlight lifts it. The
    10th percentile over the frame ignores sky and white walls (where the prior fails); dividing by
    the airlight (99.5th percentile of luminance) makes it exposure-invariant. On a grey frame it
    reads as lost global contrast, which is what haze does to a grey image too.
    """
    k = max(3, int(round(patch_frac * min(x.shape[:2]))) | 1)
    dark = cv2.erode(x.min(axis=2), cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    airlight = float(np.percentile(luma(x), 99.5))
    return float(np.percentile(dark, 10)) / max(airlight, 0.05)


def brightness(x: np.ndarray) -> float:
    """95th percentile of luminance: a lit scene always has surfaces near the top of the range; low
    light scales them down. The percentile ignores lamps and headlights, which stay saturated."""
    return float(np.percentile(luma(x), 95))


def rain_streaks(x: np.ndarray, width: int = 5, length: int = 9, tiles: int = 4) -> float:
    """Thin, long, near-vertical bright structure relative to its horizontal counterpart.

    A white top-hat across rows keeps structures thinner than ``width``; averaging it along
    ``length`` rows keeps those that are also long and vertical (falling drops blurred by the
    exposure). Scenes hold thin verticals (poles) and horizontals (lane marks) alike, so the ratio
    of the two responses is taken, per tile of a grid, and its median: rain falls everywhere,
    poles and trunks cluster.
    """
    y = luma(x)
    across = cv2.getStructuringElement(cv2.MORPH_RECT, (width, 1))
    along = cv2.getStructuringElement(cv2.MORPH_RECT, (1, width))
    vertical = cv2.blur(y - cv2.morphologyEx(y, cv2.MORPH_OPEN, across), (1, length))
    horizontal = cv2.blur(y - cv2.morphologyEx(y, cv2.MORPH_OPEN, along), (length, 1))
    h, w = y.shape
    ratios = []
    for i in range(tiles):
        for j in range(tiles):
            cell = (slice(i * h // tiles, (i + 1) * h // tiles), slice(j * w // tiles, (j + 1) * w // tiles))
            ratios.append(float(vertical[cell].mean()) / max(float(horizontal[cell].mean()), 1e-4))
    return float(np.median(ratios))


@dataclass(frozen=True)
class Evidence:
    """The raw statistics of a frame and the stage gates they give (order of ``pkdm.STAGES``)."""

    veil: float
    brightness: float
    streaks: float

    @property
    def gates(self) -> tuple[float, float, float]:
        """(dehaze, lowlight, derain), each in [0,1]; 0 leaves the frame untouched."""
        return ramp(self.veil, *HAZE_RAMP), ramp(self.brightness, *DARK_RAMP), ramp(self.streaks, *RAIN_RAMP)


def measure(img: np.ndarray) -> Evidence:
    """The evidence of one visible frame (float in [0,1], HxWx3 RGB or HxW grey)."""
    x = working_frame(img)
    return Evidence(haze_veil(x), brightness(x), rain_streaks(x))
