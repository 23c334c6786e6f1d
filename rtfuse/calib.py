"""Infrared-to-visible rig calibration: a homography estimated from frame pairs, stored as TOML.

Two lenses side by side see the scene through (approximately) a homography. Infrared and
visible intensities are unrelated (hot is bright, a white wall may be cold), so registration
aligns *structure*: saturated gradient-magnitude maps, which are polarity-free and do not care
which modality is brighter. The estimate is coarse to fine: a global search over rotation and
scale with phase correlation for the shift (robust to large offsets, no features needed), then
enhanced-correlation (ECC) refinement on an image pyramid, affine first and homography last.
Several pairs of a static rig are combined by consensus of their corner positions, and every
estimate is scored, so a textureless or unrelated pair raises instead of returning a wrong warp.
"""

from __future__ import annotations

import logging
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from rtfuse.errors import RtfuseError
from rtfuse.imageio import IMAGE_SUFFIXES, pair_folders, read_image, rgb_to_gray, to_float01

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
Size = tuple[int, int]  # (width, height), as OpenCV and the file format write it

# Acceptance of one pair: the edge maps must correlate at the estimate, and clearly better
# there than one coarse pixel away (a sharp peak); unrelated images give a flat, low surface.
MIN_EDGE_CORRELATION = 0.15
MIN_PEAK_CONTRAST = 0.02
# Pairs of one static rig must agree; estimates further than this (mean corner distance, in
# visible pixels) from the consensus are outliers.
CONSENSUS_TOLERANCE_PX = 8.0
# Fewer edge pixels than this fraction means there is nothing to register (fog, lens cap).
MIN_STRUCTURE_FRACTION = 0.01
MIN_EDGE_STEP = 8 / 255  # an edge is a step of at least 8 grey levels (of 255) at half resolution

_COARSE = 0.25
_ROTATIONS_DEG = tuple(range(-14, 15, 2))
_SCALES = (0.9, 1.0, 1.1, 1.2)
_LEVELS: tuple[tuple[float, int, float], ...] = (
    (0.25, cv2.MOTION_AFFINE, 1.0),
    (0.5, cv2.MOTION_HOMOGRAPHY, 1.0),
    (1.0, cv2.MOTION_HOMOGRAPHY, 1.5),
)
_ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)


@dataclass(frozen=True)
class RegistrationStats:
    """How well the estimate is supported; written to the file so a drifting rig can be spotted."""

    edge_correlation: tuple[float, ...]  # per used pair: ZNCC of the edge maps at the estimate
    peak_contrast: tuple[float, ...]  # per used pair: correlation minus the best 1-coarse-pixel shift
    corner_spread_px: float  # mean corner distance of per-pair estimates from the consensus
    pairs_used: int
    pairs_total: int

    @property
    def residual(self) -> float:
        """1 - mean edge correlation: 0 is a perfect structural match, 1 no match at all."""
        return 1.0 - float(np.mean(self.edge_correlation))

    def summary(self) -> str:
        cc = self.edge_correlation
        return (
            f"pairs used {self.pairs_used}/{self.pairs_total}, edge correlation mean "
            f"{np.mean(cc):.3f} (min {min(cc):.3f}), residual {self.residual:.3f}, peak contrast "
            f"min {min(self.peak_contrast):.3f}, corner spread {self.corner_spread_px:.2f} px"
        )


@dataclass(frozen=True)
class Calibration:
    """An IR-to-visible homography and the image sizes it is valid for."""

    homography: np.ndarray  # 3x3, maps IR pixel coordinates to visible pixel coordinates
    ir_size: Size
    vis_size: Size
    stats: RegistrationStats
    date: str  # ISO 8601, UTC

    def check_sizes(self, vis_size: Size, ir_size: Size) -> None:
        """Refuse streams of other sizes: the homography is in pixels of the calibrated sizes."""
        if tuple(vis_size) != tuple(self.vis_size) or tuple(ir_size) != tuple(self.ir_size):
            raise RtfuseError(
                f"calibration is for visible {_wh(self.vis_size)} and infrared {_wh(self.ir_size)} "
                f"but the streams are visible {_wh(vis_size)} and infrared {_wh(ir_size)} (WxH); "
                f"recalibrate with rtfuse calib"
            )

    def warper(self) -> Callable[[np.ndarray], np.ndarray]:
        """A function that warps one IR frame into the visible frame; maps are built once here."""
        w, h = self.vis_size
        inverse = np.linalg.inv(self.homography)
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        pts = np.stack([xs, ys, np.ones_like(xs)], axis=-1) @ inverse.T
        map_x = (pts[..., 0] / pts[..., 2]).astype(np.float32)
        map_y = (pts[..., 1] / pts[..., 2]).astype(np.float32)
        fixed_xy, fixed_frac = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
        ir_w, ir_h = self.ir_size

        def warp(ir: np.ndarray) -> np.ndarray:
            if (ir.shape[1], ir.shape[0]) != (ir_w, ir_h):
                raise RtfuseError(
                    f"infrared frame is {ir.shape[1]}x{ir.shape[0]} but the calibration is for "
                    f"{_wh(self.ir_size)} (WxH)"
                )
            return cv2.remap(ir, fixed_xy, fixed_frac, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

        return warp

    def save(self, path: str | Path) -> None:
        """Write the small TOML documented in calib/README.md (no TOML writer dependency)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = ",\n".join("  [" + ", ".join(_f(v) for v in row) + "]" for row in self.homography)
        s = self.stats
        text = (
            "# rtfuse rig calibration: infrared -> visible homography (see calib/README.md)\n"
            f"version = {FORMAT_VERSION}\n"
            f"date = {self.date}\n"
            f"ir_size = [{self.ir_size[0]}, {self.ir_size[1]}]\n"
            f"vis_size = [{self.vis_size[0]}, {self.vis_size[1]}]\n"
            f"homography = [\n{rows},\n]\n"
            "\n[residual]\n"
            f"residual = {_f(s.residual)}\n"
            f"edge_correlation = [{', '.join(_f(v) for v in s.edge_correlation)}]\n"
            f"peak_contrast = [{', '.join(_f(v) for v in s.peak_contrast)}]\n"
            f"corner_spread_px = {_f(s.corner_spread_px)}\n"
            f"pairs_used = {s.pairs_used}\n"
            f"pairs_total = {s.pairs_total}\n"
        )
        path.write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        path = Path(path)
        if not path.is_file():
            raise RtfuseError(f"{path}: no such calibration file")
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
            if doc.get("version") != FORMAT_VERSION:
                raise RtfuseError(f"{path}: calibration format version {doc.get('version')!r}, expected {FORMAT_VERSION}")
            hom = np.array(doc["homography"], dtype=np.float64)
            if hom.shape != (3, 3) or not np.isfinite(hom).all():
                raise RtfuseError(f"{path}: homography must be a finite 3x3 matrix")
            r = doc["residual"]
            date = doc["date"]
            return cls(
                homography=hom,
                ir_size=_size(doc["ir_size"]),
                vis_size=_size(doc["vis_size"]),
                stats=RegistrationStats(
                    edge_correlation=tuple(float(v) for v in r["edge_correlation"]),
                    peak_contrast=tuple(float(v) for v in r["peak_contrast"]),
                    corner_spread_px=float(r["corner_spread_px"]),
                    pairs_used=int(r["pairs_used"]),
                    pairs_total=int(r["pairs_total"]),
                ),
                date=date.isoformat() if isinstance(date, datetime) else str(date),
            )
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RtfuseError(f"{path}: not a valid calibration file ({exc})") from exc


def estimate(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    min_correlation: float = MIN_EDGE_CORRELATION,
    min_contrast: float = MIN_PEAK_CONTRAST,
) -> Calibration:
    """Estimate the IR-to-visible homography from (visible, infrared) frame pairs of one rig.

    Visible may be RGB or gray, infrared gray (or gray stored as RGB); uint8, uint16 or float.
    Raises RtfuseError ("registration failed ...") when no pair registers convincingly or the
    pairs disagree, rather than returning a warp nobody can trust.
    """
    if not pairs:
        raise RtfuseError("registration failed: no frame pairs given")
    vis_size = (pairs[0][0].shape[1], pairs[0][0].shape[0])
    ir_size = (pairs[0][1].shape[1], pairs[0][1].shape[0])
    results: list[PairResult] = []
    failures: list[str] = []
    for i, (vis, ir) in enumerate(pairs):
        if (vis.shape[1], vis.shape[0]) != vis_size or (ir.shape[1], ir.shape[0]) != ir_size:
            raise RtfuseError(f"pair {i}: sizes differ from the first pair; one rig, one pair of sizes")
        try:
            res = register_pair(vis, ir)
        except RtfuseError as exc:
            failures.append(f"pair {i}: {exc}")
            continue
        if res.correlation < min_correlation or res.contrast < min_contrast:
            failures.append(
                f"pair {i}: edge correlation {res.correlation:.3f} (residual {1 - res.correlation:.3f}, "
                f"need correlation >= {min_correlation}), peak contrast {res.contrast:.3f} "
                f"(need >= {min_contrast})"
            )
            continue
        results.append(res)
    for f in failures:
        log.info("rejected %s", f)
    if not results:
        raise RtfuseError(
            "registration failed: no pair aligned convincingly (textureless or unrelated images?); "
            + "; ".join(failures[:3])
        )
    hom, inliers, spread = _consensus([r.homography for r in results], ir_size)
    if 2 * len(inliers) <= len(results):
        raise RtfuseError(
            f"registration failed: pairs disagree, only {len(inliers)} of {len(results)} agree within "
            f"{CONSENSUS_TOLERANCE_PX} px (residual corner spread {spread:.1f} px); is the rig static?"
        )
    used = [results[i] for i in inliers]
    stats = RegistrationStats(
        edge_correlation=tuple(round(r.correlation, 4) for r in used),
        peak_contrast=tuple(round(r.contrast, 4) for r in used),
        corner_spread_px=round(spread, 3),
        pairs_used=len(used),
        pairs_total=len(pairs),
    )
    date = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return Calibration(homography=hom, ir_size=ir_size, vis_size=vis_size, stats=stats, date=date)


@dataclass(frozen=True)
class PairResult:
    homography: np.ndarray
    correlation: float
    contrast: float


def register_pair(vis: np.ndarray, ir: np.ndarray) -> PairResult:
    """Register one pair: global search, then ECC coarse to fine on edge maps."""
    v = _gray(vis)
    g = _gray(ir)
    for name, img in (("visible", v), ("infrared", g)):
        frac = _structure_fraction(img)
        if frac < MIN_STRUCTURE_FRACTION:
            raise RtfuseError(
                f"{name} image has almost no structure ({100 * frac:.2f}% edge pixels; residual 1.000)"
            )
    hom = _global_search(_structure(_resize(v, _COARSE), 1.0), _structure(_resize(g, _COARSE), 1.0))
    hom = _unscale(hom, _COARSE)
    correlation = 0.0
    for f, motion, sigma in _LEVELS:
        vs, gs = _structure(_resize(v, f), sigma), _structure(_resize(g, f), sigma)
        try:
            scaled, correlation = _ecc(vs, gs, _scale(hom, f), motion)
        except cv2.error as exc:
            log.info("ECC did not converge at scale %.2f (%s); keeping the coarser estimate", f, exc.err)
            continue
        hom = _unscale(scaled, f)
    vs, gs = _structure(_resize(v, _COARSE), 1.0), _structure(_resize(g, _COARSE), 1.0)
    contrast = _peak_contrast(vs, gs, _scale(hom, _COARSE))
    return PairResult(homography=hom / hom[2, 2], correlation=float(correlation), contrast=contrast)


def load_pairs(vis: str | Path, ir: str | Path, frames: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """(visible, infrared) pairs from two image files, two folders (paired by name) or two videos.

    From folders and videos, ``frames`` pairs spread evenly over the set are taken: frames far
    apart in time show different content, which makes the consensus meaningful.
    """
    vis, ir = Path(vis), Path(ir)
    if vis.is_dir() != ir.is_dir():
        raise RtfuseError(f"give two folders or two files, not {vis} and {ir}")
    if vis.is_dir():
        found = pair_folders(vis, ir)
        if not found.pairs:
            raise RtfuseError(f"no image names in common between {vis} and {ir}")
        chosen = [found.pairs[i] for i in _spread(len(found.pairs), frames)]
        return [(read_image(v), read_image(i, gray=True)) for v, i in chosen]
    if vis.suffix.lower() in IMAGE_SUFFIXES and ir.suffix.lower() in IMAGE_SUFFIXES:
        return [(read_image(vis), read_image(ir, gray=True))]
    vis_frames, ir_frames = _video_frames(vis, frames), _video_frames(ir, frames)
    return [(v, rgb_to_gray(i)) for v, i in zip(vis_frames, ir_frames)]


def edge_overlay(vis: np.ndarray, ir_warped: np.ndarray) -> np.ndarray:
    """RGB image for a person to judge alignment: visible edges green, IR edges magenta, both white."""
    base = (0.35 * _edge_source(vis)).astype(np.uint8)
    ev, ei = _edges(vis), _edges(ir_warped)
    out = np.stack([base, base, base], axis=-1)
    out[ev] = (0, 255, 0)
    out[ei] = (255, 0, 255)
    out[ev & ei] = (255, 255, 255)
    return out


def corner_error(h1: np.ndarray, h2: np.ndarray, size: Size) -> float:
    """Mean distance between the four image corners mapped by two homographies (pixels)."""
    w, h = size
    c = np.float64([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2)
    return float(np.mean(np.linalg.norm(cv2.perspectiveTransform(c, h1) - cv2.perspectiveTransform(c, h2), axis=2)))


def _spread(n: int, k: int) -> list[int]:
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(min(k, n))})


def _video_frames(path: Path, k: int) -> list[np.ndarray]:
    """``k`` RGB frames spread over a video (seeking; falls back to reading through)."""
    if not path.is_file():
        raise RtfuseError(f"{path}: no such file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise RtfuseError(f"{path}: cannot open as video or image")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        out = []
        for idx in _spread(max(count, 1), k):
            cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
            ok, frame = cap.read()
            if ok:
                out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        if not out:
            raise RtfuseError(f"{path}: no frames could be read")
        return out
    finally:
        cap.release()


def _edge_source(img: np.ndarray) -> np.ndarray:
    g = rgb_to_gray(img) if img.ndim == 3 else img
    return np.clip(to_float01(g) * 255.0, 0, 255).astype(np.uint8)


def _edges(img: np.ndarray) -> np.ndarray:
    """Canny on a contrast-equalised image, so dark night frames still show their edges."""
    g = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(_edge_source(img))
    return cv2.Canny(cv2.GaussianBlur(g, (0, 0), 1.5), 40, 100) > 0


def _gray(img: np.ndarray) -> np.ndarray:
    """Float gray in [0,1]; the edge maps are contrast-normalised so the scale does not matter."""
    if img.ndim == 3:
        img = rgb_to_gray(img)
    return to_float01(img)


def _resize(img: np.ndarray, f: float) -> np.ndarray:
    return img if f == 1.0 else cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)


def _gradient_magnitude(img: np.ndarray, sigma: float) -> np.ndarray:
    b = cv2.GaussianBlur(img, (0, 0), sigma)
    gx = cv2.Sobel(b, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(b, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def _structure(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gradient magnitude saturated at its 90th percentile: edges count, their contrast hardly."""
    m = _gradient_magnitude(img, sigma)
    k = float(np.percentile(m, 90)) + 1e-6
    return (m / (m + k)).astype(np.float32)


def _structure_fraction(img: np.ndarray) -> float:
    """Fraction of pixels on an edge of at least MIN_EDGE_STEP (Sobel gives 4x a unit step)."""
    return float(np.mean(_gradient_magnitude(_resize(img, 0.5), 1.0) > 4 * MIN_EDGE_STEP))


def _scale(hom: np.ndarray, f: float) -> np.ndarray:
    s = np.diag([f, f, 1.0])
    return s @ hom @ np.linalg.inv(s)


def _unscale(hom: np.ndarray, f: float) -> np.ndarray:
    return _scale(hom, 1.0 / f)


def _global_search(vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Best similarity transform over a rotation/scale grid; phase correlation gives the shift."""
    h, w = vis.shape
    size_fit = np.diag([w / ir.shape[1], h / ir.shape[0], 1.0])
    window = cv2.createHanningWindow((w, h), cv2.CV_64F)
    best: tuple[float, np.ndarray] | None = None
    for scale in _SCALES:
        for rot in _ROTATIONS_DEG:
            a = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), rot, scale), [0, 0, 1]]) @ size_fit
            moved = cv2.warpPerspective(ir, a, (w, h)).astype(np.float64)
            # OpenCV 5.0 phaseCorrelate windows its inputs in place: always pass fresh arrays.
            (dx, dy), response = cv2.phaseCorrelate(moved, vis.astype(np.float64), window)
            if best is None or response > best[0]:
                best = (response, np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]]) @ a)
    assert best is not None
    return best[1]


def _ecc(vis: np.ndarray, ir: np.ndarray, hom: np.ndarray, motion: int) -> tuple[np.ndarray, float]:
    """One ECC refinement; OpenCV's warp maps template (visible) to input (infrared) pixels."""
    warp = np.linalg.inv(hom)
    warp = (warp / warp[2, 2]).astype(np.float32)
    if motion == cv2.MOTION_AFFINE:
        warp = warp[:2].copy()
    cc, warp = cv2.findTransformECC(vis, ir, warp, motion, _ECC_CRITERIA, None, 5)
    if warp.shape[0] == 2:
        warp = np.vstack([warp, [0, 0, 1]])
    out = np.linalg.inv(warp.astype(np.float64))
    return out / out[2, 2], float(cc)


def _zncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    a = a[mask] - a[mask].mean()
    b = b[mask] - b[mask].mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def _peak_contrast(vis: np.ndarray, ir: np.ndarray, hom: np.ndarray, shift: float = 2.0) -> float:
    """Correlation at the estimate minus the best of eight shifted estimates (coarse pixels)."""
    h, w = vis.shape
    mask = cv2.warpPerspective(np.ones_like(ir), hom, (w, h)) > 0.999
    mask = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if mask.sum() < 100:
        return 0.0
    at = _zncc(vis, cv2.warpPerspective(ir, hom, (w, h)), mask)
    around = []
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)):
        t = np.array([[1, 0, dx * shift], [0, 1, dy * shift], [0, 0, 1.0]])
        around.append(_zncc(vis, cv2.warpPerspective(ir, t @ hom, (w, h)), mask))
    return at - max(around)


def _consensus(homs: list[np.ndarray], ir_size: Size) -> tuple[np.ndarray, list[int], float]:
    """Robust combination of per-pair homographies: medoid in corner space, mean of its agreers."""
    w, h = ir_size
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    corners = np.stack([cv2.perspectiveTransform(src.reshape(-1, 1, 2), hm).reshape(4, 2) for hm in homs])
    dist = np.linalg.norm(corners[:, None] - corners[None, :], axis=3).mean(axis=2)
    medoid = int(np.argmin(dist.sum(axis=1)))
    inliers = [i for i in range(len(homs)) if dist[medoid, i] <= CONSENSUS_TOLERANCE_PX]
    mean_corners = corners[inliers].mean(axis=0).astype(np.float32)
    hom = cv2.getPerspectiveTransform(src, mean_corners).astype(np.float64)
    spread = float(np.mean([np.linalg.norm(corners[i] - mean_corners, axis=1).mean() for i in inliers]))
    return hom / hom[2, 2], inliers, spread


def _wh(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


def _size(v: object) -> Size:
    if not isinstance(v, list) or len(v) != 2 or not all(isinstance(x, int) and x > 0 for x in v):
        raise ValueError(f"size must be [width, height], got {v!r}")
    return (v[0], v[1])


def _f(v: float) -> str:
    """A float as TOML writes it (repr round-trips exactly; TOML spells nan/inf the same way)."""
    return repr(float(v))
