"""Registration of infrared to visible: a homography estimated from frame pairs of one rig.

Infrared and visible intensities are unrelated (hot is bright, a white wall may be cold), so
registration aligns *structure*: Normalized Gradient Fields (NGF), the mean squared cosine of the
angle between the two images' gradient directions. Squaring makes it polarity-free, and normalising
the gradients (with an edge-noise floor) makes it ignore how strong an edge is in either
modality. The estimate is coarse to fine: a global search at 1/4 resolution over rotation and
scale with the NGF score of every shift at once (FFT); each of its best peaks is refined through
the 1/4 and 1/2 levels (differentiable warping, autograd, L-BFGS; affine first, then with the
perspective terms) and the best one there wins. On the fine level, blocks of the image find their
local shifts and a robust homography is fitted to them (``local.py``); the blocks of several pairs
of a static rig, after a consensus of their corner positions, go into one fit, and one pair's fit
is averaged with its fits under fixed internal warps, so that a scene at several depths does not
make it jump between them. A pair whose alignment correlates weakly or barely beats a distinct
rival alignment is refused, and so is a fit whose corners its blocks leave loose, so a
textureless, unrelated or ambiguous pair raises instead of returning a wrong warp.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from rtfuse.calib import local
from rtfuse.calib.calibration import Calibration, RegistrationStats, Size
from rtfuse.calib.synthetic import WarpRange, draw_warp, warp_frame
from rtfuse.color import rgb_to_gray
from rtfuse.errors import RtfuseError
from rtfuse.imageio import to_float01

log = logging.getLogger(__name__)

# Acceptance of one pair: the orientation fields must correlate at the estimate (unrelated images
# score about 0), and the best alignment must beat the best *distinct* rival alignment (another
# search peak refined as far and more than _DISTINCT_PX away, or, when it scores within this
# margin, its fine-level fit more than _DISTINCT_FINE_PX away) by a margin: a scene with two
# near-equal alignments (repetitive structure, little overlap, objects at several depths) is
# refused, not guessed.
MIN_EDGE_CORRELATION = 0.1
MIN_PEAK_CONTRAST = 0.03
# Pairs of one static rig must agree; estimates further than this (mean corner distance, in
# visible pixels) from the consensus are outliers.
CONSENSUS_TOLERANCE_PX = 8.0
# Fewer edge pixels than this fraction means there is nothing to register (fog, lens cap).
MIN_STRUCTURE_FRACTION = 0.01
MIN_EDGE_STEP = 8 / 255  # an edge is a step of at least 8 grey levels (of 255) at half resolution

_COARSE = 0.25  # resolution of the global search
_ROTATIONS_DEG = tuple(range(-12, 13, 3))
_SCALES = (0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2)
_MAX_SHIFT = 0.25  # global search: largest shift, as a fraction of the visible size
_MIN_OVERLAP = 0.5  # global search: shifts that overlap less of the visible frame are not scored
_CANDIDATES = 3  # best global-search peaks, each refined through the middle level; the best goes on
_DISTINCT_PX = 8.0  # peaks closer than this (mean corner distance, full resolution) are one peak
# A rival within the peak contrast of the best is judged on the fine level instead: both are
# fitted there, and fits within _DISTINCT_FINE_PX are one alignment (the middle level stopped two
# starts of it apart), fits further apart two (a scene at several depths pins no homography down:
# MSRS 00107D's starts 0.3 px apart end 20 px apart). Only for a single pair: with several, the
# consensus of the frames is the check, and the fits would cost `rtfuse calib` its time budget.
_DISTINCT_FINE_PX = 5.0
# Pyramid levels the optimiser refines every candidate on: (scale, Gaussian sigma in level
# pixels, L-BFGS iterations, perspective terms free).
_LEVELS: tuple[tuple[float, float, int, bool], ...] = (
    (0.25, 1.0, 40, False),
    (0.5, 1.0, 40, True),
)
# The fine level (full resolution, capped at _FINE_MAX_PX on the longer side to keep large frames
# fast) is fitted from block shifts, searched within each radius in turn (fine-level pixels): it
# halved the median self-consistency of the optimiser it replaced, and starting at 16 px rather
# than 8 (the middle level can be that far off) took another 29% off (experiments/log.md, session 20).
_FINE_SIGMA = 1.0
_FINE_MAX_PX = 800
_FINE_RADII_PX = (16, 8, 4, 3)
# The fit's Cauchy scale at each window (fine-level pixels). Shrinking it with the window
# (graduated non-convexity, 4/2/1/1 px) did not steady the fit on scenes at several depths and
# raised the median self-consistency 0.72 -> 1.26 px (experiments/log.md, session 21).
_FINE_CAUCHY_PX = (local.CAUCHY_SCALE_PX,) * len(_FINE_RADII_PX)
# One pair's fine fit is smoothed: made again with the infrared frame under fixed internal warps
# (each from the middle level's estimate carried through its warp), mapped back, and the frame
# corners of all averaged. On a scene at several depths one fit jumps between the depths' basins
# with a small change of its input (MSRS 00012N, 00028N: 6 px); the mean over a fixed spread of
# inputs moves by a fraction of a jump (self-consistency 6.1 -> 1.5, 6.5 -> 3.9 px; median
# unchanged; experiments/log.md, session 21). Several pairs are steadied by their joint fit instead.
_SMOOTHING_WARPS = 8
_SMOOTHING_RANGE = WarpRange(rotation_deg=3.0, scale=(0.95, 1.05), shift=0.04, perspective=0.01)
# A fit needs this many structured blocks, and its frame corners a predicted standard deviation
# of at most MAX_CORNER_SD_PX (visible pixels): fewer or looser blocks leave the warp to chance.
MIN_BLOCKS = 20
MAX_CORNER_SD_PX = 3.0
# Pixels this close to the overlap border are not scored: their gradients see the zero padding.
_BORDER = 0.98


def estimate(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    min_correlation: float = MIN_EDGE_CORRELATION,
    min_contrast: float = MIN_PEAK_CONTRAST,
    progress: Callable[[int], None] | None = None,
) -> Calibration:
    """Estimate the IR-to-visible homography from (visible, infrared) frame pairs of one rig.

    Each pair is searched and refined to the middle pyramid level on its own; the blocks of the
    pairs that agree (consensus of their corners) then go into *one* fine-level fit: several frames
    constrain the perspective terms that one frame's structure leaves loose. One pair's fit is
    smoothed over internal warps of its infrared frame (``_SMOOTHING_WARPS``). Visible may be RGB or
    gray, infrared gray (or gray stored as RGB); uint8, uint16 or float. Raises RtfuseError
    ("registration failed ...") when no pair registers convincingly, the pairs disagree, or the
    fit leaves the corners loose, rather than returning a warp nobody can trust. ``progress(1)`` is
    called after each pair and after the fine fit.
    """
    if not pairs:
        raise RtfuseError("registration failed: no frame pairs given")
    vis_size = (pairs[0][0].shape[1], pairs[0][0].shape[0])
    ir_size = (pairs[0][1].shape[1], pairs[0][1].shape[0])
    found: list[tuple[int, _Pyramid, _Search]] = []
    failures: list[str] = []
    for i, (vis, ir) in enumerate(pairs):
        if (vis.shape[1], vis.shape[0]) != vis_size or (ir.shape[1], ir.shape[0]) != ir_size:
            raise RtfuseError(f"pair {i}: sizes differ from the first pair; one rig, one pair of sizes")
        try:
            pyramid = _Pyramid.build(vis, ir)
            search = _search(pyramid, min_contrast, judge_on_fine=len(pairs) == 1)
        except RtfuseError as exc:
            failures.append(f"pair {i}: {exc}")
            continue
        finally:
            if progress is not None:
                progress(1)
        if search.score < min_correlation or search.margin < min_contrast:
            failures.append(
                f"pair {i}: edge correlation {search.score:.3f} (residual {1 - search.score:.3f}, "
                f"need correlation >= {min_correlation}), peak contrast {search.margin:.3f} "
                f"(need >= {min_contrast})"
            )
            continue
        found.append((i, pyramid, search))
    for f in failures:
        log.info("rejected %s", f)
    if not found:
        raise RtfuseError(
            "registration failed: no pair aligned convincingly (textureless or unrelated images, or a scene "
            "at several depths?); "
            + "; ".join(failures[:3])
        )
    hom, inliers, spread = _consensus([s.homography(p) for _, p, s in found], ir_size)
    if 2 * len(inliers) <= len(found):
        raise RtfuseError(
            f"registration failed: pairs disagree, only {len(inliers)} of {len(found)} agree within "
            f"{CONSENSUS_TOLERANCE_PX} px (residual corner spread {spread:.1f} px); is the rig static?"
        )
    used = [found[i] for i in inliers]
    pyramids = [p for _, p, _ in used]
    single = used[0] if len(used) == 1 else None
    if single:  # its own estimate, whose fit the search may have made already
        fine = single[2].fine or _fit_fine(pyramids, single[2].params)
    else:
        fine = _fit_fine(pyramids, _to_params(hom, vis_size, ir_size))
    loose = fine.blocks < MIN_BLOCKS or fine.corner_sd_px > MAX_CORNER_SD_PX
    if single and not loose:  # a fit refused anyway is not smoothed
        index, pyramid, search = single
        hom, spread = _smoothed(pairs[index], pyramid, search, fine)
        params = _to_params(hom, vis_size, ir_size)
    else:
        hom, params = _from_params(fine.params, vis_size, ir_size), fine.params
    if progress is not None:
        progress(1)
    correlation = tuple(round(_ngf_score(params, p.fine).item(), 4) for p in pyramids)
    residual = f"residual {1 - float(np.mean(correlation)):.3f}"
    if loose:
        raise RtfuseError(
            f"registration failed: the fit rests on {fine.blocks} structured blocks and leaves the frame "
            f"corners uncertain by {fine.corner_sd_px:.1f} px (need >= {MIN_BLOCKS} blocks and <= "
            f"{MAX_CORNER_SD_PX} px; {residual}); frames with structure "
            f"spread over the whole image register better"
        )
    stats = RegistrationStats(
        edge_correlation=correlation,
        peak_contrast=tuple(round(s.margin, 4) for _, _, s in used),
        corner_spread_px=round(spread, 3),
        pairs_used=len(used),
        pairs_total=len(pairs),
        blocks=fine.blocks,
        corner_sd_px=round(fine.corner_sd_px, 3),
    )
    date = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return Calibration(homography=hom, ir_size=ir_size, vis_size=vis_size, stats=stats, date=date)


@dataclass(frozen=True)
class PairResult:
    homography: np.ndarray
    correlation: float  # orientation-field correlation at the estimate, on the fine level (-1..1)
    contrast: float  # margin over the best distinct rival alignment (middle-level scores)
    blocks: int  # structured blocks the fine fit rests on
    corner_sd_px: float  # the fit's predicted standard deviation of the frame corners, visible pixels


def register_pair(vis: np.ndarray, ir: np.ndarray) -> PairResult:
    """Register one pair (no acceptance): global NGF search, NGF optimisation, smoothed block fit."""
    pyramid = _Pyramid.build(vis, ir)
    search = _search(pyramid, MIN_PEAK_CONTRAST, judge_on_fine=True)
    fine = search.fine or _fit_fine([pyramid], search.params)
    hom, _ = _smoothed((vis, ir), pyramid, search, fine)
    return PairResult(
        homography=hom,
        correlation=_ngf_score(_to_params(hom, pyramid.vis_px, pyramid.ir_px), pyramid.fine).item(),
        contrast=search.margin,
        blocks=fine.blocks,
        corner_sd_px=fine.corner_sd_px,
    )


@dataclass(frozen=True)
class _Pyramid:
    """One pair's levels (_LEVELS, then the fine level), built once: the search and the fit share them."""

    levels: tuple[_Level, ...]
    vis_px: Size
    ir_px: Size

    @property
    def fine(self) -> _Level:
        return self.levels[-1]

    @classmethod
    def build(cls, vis: np.ndarray, ir: np.ndarray) -> _Pyramid:
        v, g = _gray(vis), _gray(ir)
        for name, img in (("visible", v), ("infrared", g)):
            frac = _structure_fraction(img)
            if frac < MIN_STRUCTURE_FRACTION:
                raise RtfuseError(
                    f"{name} image has almost no structure ({100 * frac:.2f}% edge pixels; residual 1.000)"
                )
        vis_valid, ir_valid = _valid(v), _valid(g)
        vis_px, ir_px = (v.shape[1], v.shape[0]), (g.shape[1], g.shape[0])
        scales = [(scale, sigma) for scale, sigma, _, _ in _LEVELS] + [(_fine_scale(vis_px), _FINE_SIGMA)]
        levels = tuple(_Level.build(v, g, vis_valid, ir_valid, scale, sigma) for scale, sigma in scales)
        return cls(levels, vis_px, ir_px)

    @classmethod
    def fine_only(cls, vis: np.ndarray, ir: np.ndarray) -> _Pyramid:
        """The fine level alone, for a fit that needs no search (no structure check either)."""
        v, g = _gray(vis), _gray(ir)
        vis_px = (v.shape[1], v.shape[0])
        level = _Level.build(v, g, _valid(v), _valid(g), _fine_scale(vis_px), _FINE_SIGMA)
        return cls((level,), vis_px, (g.shape[1], g.shape[0]))


def _fine_scale(vis_px: Size) -> float:
    """Full resolution, capped at _FINE_MAX_PX on the longer side."""
    return min(1.0, _FINE_MAX_PX / max(vis_px))


@dataclass(frozen=True)
class _Search:
    params: torch.Tensor  # the best alignment after the middle level
    score: float  # its score there
    margin: float  # over the best distinct rival alignment
    fine: _FineFit | None  # the winner's fine-level fit, where judging a close rival needed it

    def homography(self, pyramid: _Pyramid) -> np.ndarray:
        return _from_params(self.params, pyramid.vis_px, pyramid.ir_px)


def _search(pyramid: _Pyramid, min_contrast: float, judge_on_fine: bool) -> _Search:
    """Global search, then every candidate refined through the middle level; the best one wins.

    Its margin is over the best rival that is a distinct alignment; with ``judge_on_fine``, a rival
    within ``min_contrast`` of the best is judged distinct by its fine-level fit (_DISTINCT_FINE_PX).
    """
    refined: list[tuple[float, torch.Tensor]] = []
    for hom in _global_search(pyramid.levels[0]):
        params = _to_params(hom, pyramid.vis_px, pyramid.ir_px)
        for level, (_, _, iterations, perspective) in zip(pyramid.levels, _LEVELS):
            params = _optimise(level, params, iterations, perspective)
        refined.append((_ngf_score(params, pyramid.levels[-2]).item(), params))
    refined.sort(key=lambda r: -r[0])
    score, params = refined[0]

    def homography(p: torch.Tensor) -> np.ndarray:
        return _from_params(p, pyramid.vis_px, pyramid.ir_px)

    best = homography(params)
    fine: _FineFit | None = None
    rivals = []
    for rival_score, rival in refined[1:]:
        if score - rival_score >= min_contrast or not judge_on_fine:
            distinct = corner_error(homography(rival), best, pyramid.ir_px) > _DISTINCT_PX
        else:
            fine = fine or _fit_fine([pyramid], params)
            rival_fit = homography(_fit_fine([pyramid], rival).params)
            distinct = corner_error(rival_fit, homography(fine.params), pyramid.ir_px) > _DISTINCT_FINE_PX
        if distinct:
            rivals.append(rival_score)
    return _Search(params, score, score - max(rivals) if rivals else score, fine)


@dataclass(frozen=True)
class _FineFit:
    params: torch.Tensor
    blocks: int  # blocks with weight above one half in the last fit
    corner_sd_px: float  # predicted standard deviation of the frame corners, visible pixels (inf: no fit)


def _fit_fine(pyramids: list[_Pyramid], params: torch.Tensor) -> _FineFit:
    """One homography fitted to the block shifts on the fine level of every pair, window shrinking.

    The fit is in normalised coordinates: visible point -> infrared point, like ``params``.
    """
    vis_px = pyramids[0].vis_px
    fit = None
    for radius, cauchy_px in zip(_FINE_RADII_PX, _FINE_CAUCHY_PX):
        m = _matrix(params).numpy()
        src, dst = [], []
        for pyramid in pyramids:
            level = pyramid.fine
            h, w = level.vis_valid.shape
            vis_field, ir_field = _fields(params, level)
            found = local.block_shifts(_hwc(vis_field), _hwc(ir_field), radius)
            to_normalised = np.array([2 / w, 2 / h])
            src.append((found.centres + 0.5) * to_normalised - 1)
            seen = (found.centres + found.shifts + 0.5) * to_normalised - 1
            dst.append(cv2.perspectiveTransform(seen.reshape(-1, 1, 2), m).reshape(-1, 2))
        src_all, dst_all = np.concatenate(src), np.concatenate(dst)
        if len(src_all) < MIN_BLOCKS:
            return _FineFit(params, len(src_all), float("inf"))
        fit = local.robust_homography(src_all, dst_all, m, cauchy_px * 2 / w)
        params = torch.tensor((fit.homography - np.eye(3)).ravel()[:8], dtype=params.dtype)
    assert fit is not None
    # corner deviations in infrared normalised units (half a frame side each) -> visible pixels
    corner_sd = float(np.sqrt(((fit.corner_sd * np.array(vis_px) / 2) ** 2).sum(axis=1).mean()))
    return _FineFit(params, int((fit.weights > 0.5).sum()), corner_sd)


def _smoothed(pair: tuple[np.ndarray, np.ndarray], pyramid: _Pyramid, search: _Search,
              fine: _FineFit) -> tuple[np.ndarray, float]:
    """One pair's fine fit averaged with its fits under the internal warps (_SMOOTHING_WARPS).

    Returns the IR->visible homography through the mean frame corners and the mean corner distance
    of the fits from it. A warped version whose fit rests on too few blocks is left out.
    """
    vis, ir = pair
    vis_px, ir_px = pyramid.vis_px, pyramid.ir_px
    middle = search.homography(pyramid)
    homs = [_from_params(fine.params, vis_px, ir_px)]
    for seed in range(1, _SMOOTHING_WARPS + 1):
        warp = draw_warp(np.random.default_rng(seed), ir_px, _SMOOTHING_RANGE)
        version = _Pyramid.fine_only(vis, warp_frame(ir, warp))
        fit = _fit_fine([version], _to_params(middle @ np.linalg.inv(warp), vis_px, ir_px))
        if fit.blocks >= MIN_BLOCKS:
            homs.append(_from_params(fit.params, vis_px, ir_px) @ warp)
    src, corners = _frame_corners(homs, ir_px)
    return _through_mean(src, corners)


def _hwc(field: torch.Tensor) -> np.ndarray:
    return field.permute(1, 2, 0).contiguous().numpy()


def intensity_homography(fixed: np.ndarray, moving: np.ndarray, iterations: int = 200, eps: float = 1e-6) -> np.ndarray:
    """moving -> fixed by intensity ECC: only valid within one modality (the accuracy reference)."""
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, eps)
    _, warp = cv2.findTransformECC(
        fixed.astype(np.float32), moving.astype(np.float32), np.eye(3, dtype=np.float32),
        cv2.MOTION_HOMOGRAPHY, criteria, None, 5,
    )
    hom = np.linalg.inv(warp.astype(np.float64))
    return hom / hom[2, 2]


def corner_error(h1: np.ndarray, h2: np.ndarray, size: Size) -> float:
    """Mean distance between the four image corners mapped by two homographies (pixels)."""
    w, h = size
    c = np.float64([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2)
    return float(np.mean(np.linalg.norm(cv2.perspectiveTransform(c, h1) - cv2.perspectiveTransform(c, h2), axis=2)))


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


def _structure_fraction(img: np.ndarray) -> float:
    """Fraction of pixels on an edge of at least MIN_EDGE_STEP (Sobel gives 4x a unit step)."""
    return float(np.mean(_gradient_magnitude(_resize(img, 0.5), 1.0) > 4 * MIN_EDGE_STEP))


def _scale(hom: np.ndarray, f: float) -> np.ndarray:
    s = np.diag([f, f, 1.0])
    return s @ hom @ np.linalg.inv(s)


def _unscale(hom: np.ndarray, f: float) -> np.ndarray:
    return _scale(hom, 1.0 / f)


def _valid(img: np.ndarray) -> np.ndarray:
    """Pixels that show the scene: not the black fill of an already-warped or letterboxed frame.

    That fill is exact zeros connected to the frame border; its edge is a strong, fake structure.
    """
    zero = (img <= 0).astype(np.uint8)
    _, labels = cv2.connectedComponents(zero)
    rim = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    fill = np.isin(labels, rim[rim > 0])
    return cv2.dilate(fill.astype(np.uint8), np.ones((7, 7), np.uint8)) == 0


def _normalizer(size: Size) -> np.ndarray:
    """Pixel (x, y, 1) -> normalised coordinates of F.grid_sample (align_corners=False), -1..1."""
    w, h = size
    return np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1.0]])


def _to_params(hom: np.ndarray, vis_size: Size, ir_size: Size) -> torch.Tensor:
    """IR->visible pixel homography -> 8 offsets from identity of the visible->IR normalised map.

    Normalised coordinates make all 8 parameters move the image by comparable amounts, and keep
    them valid on every pyramid level.
    """
    m = _normalizer(ir_size) @ np.linalg.inv(hom) @ np.linalg.inv(_normalizer(vis_size))
    m = m / m[2, 2]
    return torch.tensor((m - np.eye(3)).ravel()[:8], dtype=torch.float64)


def _from_params(params: torch.Tensor, vis_size: Size, ir_size: Size) -> np.ndarray:
    m = np.append(params.detach().numpy(), 0.0).reshape(3, 3) + np.eye(3)
    hom = np.linalg.inv(np.linalg.inv(_normalizer(ir_size)) @ m @ _normalizer(vis_size))
    return hom / hom[2, 2]


def _gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences; the outermost rows and columns stay zero."""
    gx = torch.zeros_like(img)
    gy = torch.zeros_like(img)
    gx[:, 1:-1] = (img[:, 2:] - img[:, :-2]) / 2
    gy[1:-1] = (img[2:] - img[:-2]) / 2
    return gx, gy


def _edge_noise(gx: torch.Tensor, gy: torch.Tensor) -> float:
    """NGF's eps: the median gradient magnitude, so weaker gradients (noise) count less."""
    return float(torch.sqrt(gx * gx + gy * gy).median()) + 1e-3


def _orientation(gx: torch.Tensor, gy: torch.Tensor, eps: float) -> torch.Tensor:
    """(2, h, w) doubled-angle field of the NGF unit gradients: (nx^2 - ny^2, 2 nx ny).

    cos^2 of the angle between two gradients is (1 + cos of the doubled angle) / 2, so the dot
    product of two such fields is the polarity-free part of NGF that carries the alignment; it
    averages to zero for unrelated images (plain NGF does not: its level depends on the texture
    in the overlap, which lets a small, busy overlap win).
    """
    norm2 = gx * gx + gy * gy + eps * eps
    return torch.stack([(gx * gx - gy * gy) / norm2, 2 * gx * gy / norm2])


@dataclass(frozen=True)
class _Level:
    """One pyramid level: the visible gradient field is fixed, the infrared image is warped."""

    vis_field: torch.Tensor  # (2, h, w) orientation field
    vis_valid: torch.Tensor
    ir: torch.Tensor  # (1, 2, h, w): the image and its validity mask, warped together
    ir_eps: float
    grid: torch.Tensor  # (h, w, 3) homogeneous normalised coordinates of the visible pixels

    @classmethod
    def build(cls, vis: np.ndarray, ir: np.ndarray, vis_valid: np.ndarray, ir_valid: np.ndarray,
              scale: float, sigma: float) -> _Level:
        v, g = _standardise(_resize(vis, scale), sigma), _standardise(_resize(ir, scale), sigma)
        vx, vy = _gradients(v)
        h, w = v.shape
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h * 2 - 1
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w * 2 - 1
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return cls(
            vis_field=_orientation(vx, vy, _edge_noise(vx, vy)), vis_valid=_mask_at(vis_valid, scale),
            ir=torch.stack([g, _mask_at(ir_valid, scale)])[None],
            ir_eps=_edge_noise(*_gradients(g)), grid=torch.stack([xx, yy, torch.ones_like(xx)], dim=-1),
        )


def _standardise(img: np.ndarray, sigma: float) -> torch.Tensor:
    b = cv2.GaussianBlur(img, (0, 0), sigma)
    return torch.from_numpy(((b - b.mean()) / (b.std() + 1e-6)).astype(np.float32))


def _mask_at(valid: np.ndarray, scale: float) -> torch.Tensor:
    m = _resize(valid.astype(np.float32), scale)
    return torch.from_numpy((m > 0.999).astype(np.float32))


def _matrix(params: torch.Tensor) -> torch.Tensor:
    """The 3x3 visible -> infrared map (normalised coordinates) of the 8 offsets from identity."""
    return torch.cat([params + torch.eye(3, dtype=params.dtype).ravel()[:8], params.new_ones(1)]).reshape(3, 3)


def _fields(params: torch.Tensor, level: _Level) -> tuple[torch.Tensor, torch.Tensor]:
    """The (2, h, w) orientation fields of visible and of infrared warped by ``params``, both zero
    where either image is invalid or the overlap border is near."""
    q = level.grid @ _matrix(params).T.float()
    xy = (q[..., :2] / q[..., 2:])[None]
    moved, valid = F.grid_sample(level.ir, xy, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    weight = (valid > 0.999) & (xy[0].abs() < _BORDER).all(dim=-1) & (level.vis_valid > 0)
    return level.vis_field * weight, _orientation(*_gradients(moved), level.ir_eps) * weight


def _ngf_score(params: torch.Tensor, level: _Level) -> torch.Tensor:
    """Normalised correlation of the two orientation fields over the valid overlap (-1..1)."""
    vis_field, ir_field = _fields(params, level)
    den = torch.sqrt((vis_field * vis_field).sum() * (ir_field * ir_field).sum()) + 1e-9
    return (vis_field * ir_field).sum() / den


def _optimise(level: _Level, params: torch.Tensor, iterations: int, perspective: bool) -> torch.Tensor:
    """L-BFGS (strong Wolfe line search) on the NGF score of one pyramid level.

    A unit step moves the image one level pixel. L-BFGS converged in a fraction of the evaluations
    Adam needed, and to a sharper optimum.
    """
    free = torch.ones(8, dtype=params.dtype)
    if not perspective:
        free[6:] = 0.0
    free = free * 2.0 / level.grid.shape[1]
    start = params.detach().clone()
    delta = torch.zeros(8, dtype=params.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([delta], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = -_ngf_score(start + delta * free, level)
        value.backward()
        return value

    opt.step(loss)
    return (start + delta * free).detach()


def _orientation_np(img: np.ndarray) -> np.ndarray:
    gx, gy = _gradients(torch.from_numpy(img))
    return _orientation(gx, gy, _edge_noise(gx, gy)).numpy()


def _global_search(level: _Level) -> list[np.ndarray]:
    """Best similarity transforms over a rotation/scale grid, every shift scored at once by FFT.

    Returns up to _CANDIDATES distinct IR->visible pixel homographies at full resolution.
    """
    vis_valid = level.vis_valid.numpy()
    vis = level.vis_field.numpy() * vis_valid
    ir, ir_valid = level.ir[0].numpy()
    h, w = vis_valid.shape
    fit = np.diag([w / ir.shape[1], h / ir.shape[0], 1.0])
    shape = (2 * h, 2 * w)
    f_vis = np.fft.rfft2(vis, shape)
    f_vis_valid = np.fft.rfft2(vis_valid, shape)
    f_vis_energy = np.fft.rfft2((vis * vis).sum(axis=0), shape)
    dy = np.fft.fftfreq(shape[0], 1 / shape[0]).round().astype(int)[:, None]
    dx = np.fft.fftfreq(shape[1], 1 / shape[1]).round().astype(int)[None, :]
    in_range = (np.abs(dx) <= _MAX_SHIFT * w) & (np.abs(dy) <= _MAX_SHIFT * h)
    peaks: list[tuple[float, np.ndarray]] = []
    for scale in _SCALES:
        for rot in _ROTATIONS_DEG:
            a = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), rot, scale), [0, 0, 1]]) @ fit
            moved = cv2.warpPerspective(ir, a, (w, h), flags=cv2.INTER_LINEAR)
            moved_valid = cv2.warpPerspective(ir_valid, a, (w, h), flags=cv2.INTER_LINEAR) > 0.999
            moved_valid = cv2.erode(moved_valid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float64)
            field = _orientation_np(moved) * moved_valid
            f_ir_valid = np.conj(np.fft.rfft2(moved_valid, shape))
            total = np.fft.irfft2((f_vis * np.conj(np.fft.rfft2(field, shape))).sum(axis=0), shape)
            overlap = np.fft.irfft2(f_vis_valid * f_ir_valid, shape)
            vis_energy = np.fft.irfft2(f_vis_energy * f_ir_valid, shape)
            ir_energy = np.fft.irfft2(f_vis_valid * np.conj(np.fft.rfft2((field * field).sum(axis=0), shape)), shape)
            ok = in_range & (overlap > _MIN_OVERLAP * vis_valid.sum())
            score = np.where(ok, total / np.sqrt(np.maximum(vis_energy * ir_energy, 1e-9)), -1.0)
            ky, kx = np.unravel_index(int(np.argmax(score)), score.shape)
            shift = np.array([[1, 0, dx[0, kx]], [0, 1, dy[ky, 0]], [0, 0, 1.0]])
            peaks.append((float(score[ky, kx]), _unscale(shift @ a, _COARSE)))
    peaks.sort(key=lambda p: -p[0])
    chosen: list[np.ndarray] = []
    size = (round(w / _COARSE), round(h / _COARSE))
    for _, hom in peaks:
        if all(corner_error(hom, c, size) > _DISTINCT_PX for c in chosen):
            chosen.append(hom)
        if len(chosen) == _CANDIDATES:
            break
    return chosen


def _consensus(homs: list[np.ndarray], ir_size: Size) -> tuple[np.ndarray, list[int], float]:
    """Robust combination of per-pair homographies: medoid in corner space, mean of its agreers."""
    src, corners = _frame_corners(homs, ir_size)
    dist = np.linalg.norm(corners[:, None] - corners[None, :], axis=3).mean(axis=2)
    medoid = int(np.argmin(dist.sum(axis=1)))
    inliers = [i for i in range(len(homs)) if dist[medoid, i] <= CONSENSUS_TOLERANCE_PX]
    hom, spread = _through_mean(src, corners[inliers])
    return hom, inliers, spread


def _frame_corners(homs: list[np.ndarray], ir_size: Size) -> tuple[np.ndarray, np.ndarray]:
    """The infrared frame's corners (4, 2) and where each homography puts them (n, 4, 2)."""
    w, h = ir_size
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    return src, np.stack([cv2.perspectiveTransform(src.reshape(-1, 1, 2), hm).reshape(4, 2) for hm in homs])


def _through_mean(src: np.ndarray, corners: np.ndarray) -> tuple[np.ndarray, float]:
    """The homography taking ``src`` to the mean of ``corners`` (n, 4, 2), and their mean distance from it."""
    mean_corners = corners.mean(axis=0).astype(np.float32)
    hom = cv2.getPerspectiveTransform(src, mean_corners).astype(np.float64)
    spread = float(np.mean([np.linalg.norm(c - mean_corners, axis=1).mean() for c in corners]))
    return hom / hom[2, 2], spread
