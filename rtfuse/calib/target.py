"""Target-based calibration, the standard practice for thermal + colour rigs.

Both cameras see a chessboard or an asymmetric circle grid (heated, cooled, or printed on a material
that shows in the infrared) over several frames. The pattern is found in each modality (in the
infrared also with inverted polarity: a heated print shows its dark squares bright), frames where
either detection fails are rejected, and the infrared-to-visible homography is fitted to all the
corners at once (RANSAC, then least squares on the inliers), with its reprojection error.

A detector orders a grid's corners from one of its ends, and which end can differ between the two
modalities (inverted polarity turns an odd-by-even chessboard's colours into those of the board
rotated by 180 degrees). Each frame's infrared ordering is therefore chosen among the grid's
symmetries as the one whose homography turns the image the least: rig cameras face the same way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import cv2
import numpy as np

from rtfuse.calib.calibration import Calibration, RegistrationStats
from rtfuse.color import rgb_to_gray
from rtfuse.errors import ParameterError, RtfuseError

log = logging.getLogger(__name__)

KINDS = ("chessboard", "circles")
RANSAC_THRESHOLD_PX = 2.0  # corners further than this from the fit (visible pixels) are outliers
MAX_REPROJECTION_PX = 3.0  # a fit whose inliers miss by more (RMS) is refused, not returned
CHESSBOARD_UPSAMPLE, CHESSBOARD_UPSAMPLE_BELOW_PX = 2, 1000  # see Target.find


@dataclass(frozen=True)
class Target:
    """A calibration pattern: ``chessboard`` inner corners, or ``circles`` of an asymmetric grid."""

    kind: str
    cols: int
    rows: int

    @classmethod
    def parse(cls, spec: str) -> Target:
        """``chessboard:9x6`` (inner corners, columns x rows) or ``circles:4x11`` (asymmetric grid)."""
        m = re.fullmatch(r"(\w+):(\d+)x(\d+)", spec.strip())
        if not m or m.group(1) not in KINDS:
            raise ParameterError(f"`target` {spec!r}: expected KIND:COLSxROWS with KIND one of {', '.join(KINDS)}, e.g. chessboard:9x6")
        cols, rows = int(m.group(2)), int(m.group(3))
        if min(cols, rows) < 2 or (m.group(1) == "chessboard" and min(cols, rows) < 3):
            raise ParameterError(f"`target` {spec!r}: too few corners to fit a homography")
        return cls(m.group(1), cols, rows)

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.cols}x{self.rows}"

    @property
    def points(self) -> int:
        return self.cols * self.rows

    def orderings(self) -> list[np.ndarray]:
        """Index permutations of the detected points under the grid's symmetries."""
        idx = np.arange(self.points)
        out = [idx, idx[::-1]]  # the other end: a 180-degree turn
        if self.kind == "chessboard" and self.cols == self.rows:  # a square board also turns by 90
            grid = idx.reshape(self.rows, self.cols)
            out += [np.rot90(grid, 1).ravel(), np.rot90(grid, 3).ravel()]
        return out

    def find(self, gray: np.ndarray, invert: bool = False) -> np.ndarray | None:
        """The pattern's points (N, 2) in pixel coordinates, or None when not found.

        A small or blurred chessboard is searched at twice the size: the corner of a blurred square
        next to its neighbours is pulled towards them, and on rendered 320x256 infrared frames the
        upsampled search cut that bias three- to fourfold (circle centres need no help).
        """
        img = 255 - gray if invert else gray
        size = (self.cols, self.rows)
        if self.kind == "chessboard":
            up = CHESSBOARD_UPSAMPLE if max(img.shape) < CHESSBOARD_UPSAMPLE_BELOW_PX else 1
            if up > 1:
                img = cv2.resize(img, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
            found, pts = cv2.findChessboardCornersSB(img, size, flags=cv2.CALIB_CB_ACCURACY)
            # pixel centres: upsampled pixel X shows original coordinate (X + 0.5) / up - 0.5
            return (pts.reshape(-1, 2).astype(np.float64) + 0.5) / up - 0.5 if found else None
        found, pts = cv2.findCirclesGrid(img, size, flags=cv2.CALIB_CB_ASYMMETRIC_GRID)
        return pts.reshape(-1, 2).astype(np.float64) if found else None


def detect(img: np.ndarray, target: Target, either_polarity: bool) -> np.ndarray | None:
    """The target's points in one frame; with ``either_polarity`` the inverted image is tried too."""
    gray = _gray8(img)
    pts = target.find(gray)
    if pts is None and either_polarity:
        pts = target.find(gray, invert=True)
    return pts


@dataclass(frozen=True)
class TargetFit:
    homography: np.ndarray  # IR pixels -> visible pixels
    reprojection_px: float  # RMS distance of the inlier corners from the fit, visible pixels
    inliers: int
    points: int
    frames_used: int
    frames_total: int


def fit_target(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    target: Target,
    progress: Callable[[int], None] | None = None,
) -> TargetFit:
    """Detect the target in every (visible, infrared) pair and fit the homography to all corners."""
    if not pairs:
        raise RtfuseError("target calibration failed: no frame pairs given")
    vis_pts, ir_pts, rejected = [], [], []
    sizes = {(vis.shape[:2], ir.shape[:2]) for vis, ir in pairs}
    if len(sizes) > 1:
        raise RtfuseError("target calibration failed: frame sizes differ between pairs; one rig, one pair of sizes")
    for i, (vis, ir) in enumerate(pairs):
        v = detect(vis, target, either_polarity=True)
        g = detect(ir, target, either_polarity=True)
        if progress is not None:
            progress(1)
        if v is None or g is None:
            rejected.append(f"pair {i}: {target.spec} not found in the {'visible' if v is None else 'infrared'} frame")
            continue
        vis_pts.append(v)
        ir_pts.append(_facing_ordering(g, v, target, ir.shape[1::-1]))
    for r in rejected:
        log.info("rejected %s", r)
    if not vis_pts:
        raise RtfuseError(
            f"target calibration failed: {target.spec} found in both frames of none of the {len(pairs)} pairs "
            f"(check the pattern size: inner corners for a chessboard); " + "; ".join(rejected[:3])
        )
    src, dst = np.concatenate(ir_pts), np.concatenate(vis_pts)
    hom, mask = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_THRESHOLD_PX, maxIters=5000, confidence=0.999)
    if hom is None:
        raise RtfuseError("target calibration failed: no homography fits the detected corners")
    keep = mask.ravel().astype(bool)
    hom, _ = cv2.findHomography(src[keep], dst[keep], 0)  # least squares on the inliers
    hom = hom / hom[2, 2]
    err = np.linalg.norm(cv2.perspectiveTransform(src[keep].reshape(-1, 1, 2), hom).reshape(-1, 2) - dst[keep], axis=1)
    rms = float(np.sqrt(np.mean(err**2)))
    if rms > MAX_REPROJECTION_PX:
        raise RtfuseError(
            f"target calibration failed: reprojection error {rms:.2f} px RMS (need <= {MAX_REPROJECTION_PX}); "
            "the cameras may not share a viewpoint closely enough for a homography, or detections are wrong"
        )
    return TargetFit(hom, rms, int(keep.sum()), len(src), len(vis_pts), len(pairs))


def estimate_from_target(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    target: Target,
    progress: Callable[[int], None] | None = None,
) -> Calibration:
    """A :class:`Calibration` from frames that show ``target`` to both cameras."""
    fit = fit_target(pairs, target, progress)
    vis, ir = pairs[0]
    stats = RegistrationStats(
        edge_correlation=(), peak_contrast=(), corner_spread_px=0.0, pairs_used=fit.frames_used,
        pairs_total=fit.frames_total, method=f"target {target.spec}", reprojection_px=round(fit.reprojection_px, 4),
    )
    date = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return Calibration(fit.homography, (ir.shape[1], ir.shape[0]), (vis.shape[1], vis.shape[0]), stats, date)


def _facing_ordering(ir_pts: np.ndarray, vis_pts: np.ndarray, target: Target, ir_size: tuple[int, int]) -> np.ndarray:
    """The infrared points reordered so that the frame's homography turns the image the least."""
    best, best_turn = ir_pts, np.inf
    centre = np.float64([[ir_size[0] / 2, ir_size[1] / 2]])
    for order in target.orderings():
        cand = ir_pts[order]
        hom, _ = cv2.findHomography(cand, vis_pts, 0)
        if hom is None:
            continue
        # the direction the IR x axis takes at the image centre, in the visible frame
        a, b = cv2.perspectiveTransform(np.concatenate([centre, centre + [[1.0, 0.0]]]).reshape(-1, 1, 2), hom).reshape(2, 2)
        turn = abs(np.arctan2(b[1] - a[1], b[0] - a[0]))
        if turn < best_turn:
            best, best_turn = cand, turn
    return best


def _gray8(img: np.ndarray) -> np.ndarray:
    """8-bit gray for OpenCV's detectors (16-bit infrared is stretched over its own range)."""
    g = rgb_to_gray(img)
    if g.dtype == np.uint8:
        return g
    g = g.astype(np.float64)
    lo, hi = np.percentile(g, (0.5, 99.5))
    return np.clip((g - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
