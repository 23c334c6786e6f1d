"""Local shifts of blocks and a robust homography fitted to them: the fine level of registration.

One global score is pulled by every edge at once (near objects with parallax, edges only one
modality shows) and its flat directions leave an optimiser wherever it stops. Here each block of
the visible orientation field finds its own shift in the (already roughly aligned) infrared field,
and a Cauchy-weighted least-squares homography keeps what agrees: blocks that disagree lose
their weight smoothly, so the fit changes continuously with its data (RANSAC's choice of a
consensus set does not), and its residuals predict how well the frame corners are pinned down.
Plain numpy functions on (h, w, 2) orientation fields and point arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BLOCK_PX = 48  # block side on the fine level
STRIDE_PX = 24  # blocks overlap by half
MIN_FIELD_FILL = 0.08  # mean orientation-field magnitude a block needs in both modalities
MIN_BLOCK_PEAK = 0.15  # correlation at the block's best shift
MIN_BLOCK_DISTINCTNESS = 0.03  # over the best shift more than _RIVAL_RADIUS px away (one edge: a ridge)
_RIVAL_RADIUS = 3
CAUCHY_SCALE_PX = 1.0  # residual at which a block's weight halves
_CORNERS = np.float64([[-1, -1], [1, -1], [1, 1], [-1, 1]])


@dataclass(frozen=True)
class BlockShifts:
    centres: np.ndarray  # (n, 2) block centres, pixels (x, y)
    shifts: np.ndarray  # (n, 2) where each block's content lies in the moving field, minus its centre


def block_shifts(fixed: np.ndarray, moving: np.ndarray, radius: int, block: int = BLOCK_PX,
                 stride: int = STRIDE_PX) -> BlockShifts:
    """Subpixel shift of each structured ``block`` of ``fixed`` within +-``radius`` px of ``moving``.

    Both are (h, w, c) float fields (orientation fields: the correlation is polarity-free). A block
    is left out when either field is nearly empty there, its best correlation is weak, on the rim
    of the search window (the shift may lie beyond it) or not distinct from a rival shift.
    """
    if fixed.shape != moving.shape or fixed.ndim != 3:
        raise ValueError(f"fields must be (h, w, c) of one shape, got {fixed.shape} and {moving.shape}")
    if radius < 2:
        raise ValueError(f"radius must be at least 2 px, got {radius}")
    fixed, moving = np.ascontiguousarray(fixed, np.float32), np.ascontiguousarray(moving, np.float32)
    h, w = fixed.shape[:2]
    fill_fixed = np.linalg.norm(fixed, axis=2)
    fill_moving = np.linalg.norm(moving, axis=2)
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    rival_zone = yy**2 + xx**2 > _RIVAL_RADIUS**2
    centres, shifts = [], []
    for y0 in range(radius, h - block - radius + 1, stride):
        for x0 in range(radius, w - block - radius + 1, stride):
            if (fill_fixed[y0:y0 + block, x0:x0 + block].mean() < MIN_FIELD_FILL
                    or fill_moving[y0:y0 + block, x0:x0 + block].mean() < MIN_FIELD_FILL):
                continue
            window = moving[y0 - radius:y0 + block + radius, x0 - radius:x0 + block + radius]
            corr = cv2.matchTemplate(window, fixed[y0:y0 + block, x0:x0 + block], cv2.TM_CCORR_NORMED)
            ky, kx = np.unravel_index(int(np.argmax(corr)), corr.shape)
            peak = corr[ky, kx]
            if peak < MIN_BLOCK_PEAK or ky in (0, 2 * radius) or kx in (0, 2 * radius):
                continue
            rival = np.roll(rival_zone, (ky - radius, kx - radius), axis=(0, 1))
            if peak - corr[rival].max() < MIN_BLOCK_DISTINCTNESS:
                continue
            centres.append((x0 + (block - 1) / 2, y0 + (block - 1) / 2))
            shifts.append((kx - radius + _vertex(corr[ky, kx - 1:kx + 2]),
                           ky - radius + _vertex(corr[ky - 1:ky + 2, kx])))
    return BlockShifts(np.float64(centres).reshape(-1, 2), np.float64(shifts).reshape(-1, 2))


def _vertex(c: np.ndarray) -> float:
    """Offset of the vertex of the parabola through three samples around their maximum."""
    den = c[0] - 2 * c[1] + c[2]
    return float(0.5 * (c[0] - c[2]) / den) if den < 0 else 0.0


def robust_weight(res2: np.ndarray) -> np.ndarray:
    """Cauchy weight of squared residuals in units of the scale: one half at one scale.

    One function for the loss of the fit, so that a variant of it is one replacement (Tukey's
    biweight was tried this way: experiments/log.md, session 21).
    """
    return 1 / (1 + res2)


def project(params: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points mapped by a homography's 8 entries (the 9th is 1) and the (n, 2, 8) Jacobian."""
    x, y = points[:, 0], points[:, 1]
    den = params[6] * x + params[7] * y + 1
    u = (params[0] * x + params[1] * y + params[2]) / den
    v = (params[3] * x + params[4] * y + params[5]) / den
    xy1 = np.stack([x, y, np.ones_like(x)], axis=1) / den[:, None]
    jac = np.zeros((len(points), 2, 8))
    jac[:, 0, 0:3] = xy1
    jac[:, 1, 3:6] = xy1
    jac[:, 0, 6:8] = -u[:, None] * xy1[:, :2]
    jac[:, 1, 6:8] = -v[:, None] * xy1[:, :2]
    return np.stack([u, v], axis=1), jac


@dataclass(frozen=True)
class RobustFit:
    homography: np.ndarray  # 3x3, src -> dst
    weights: np.ndarray  # (n,) Cauchy weight of each point at the fit, 0..1
    corner_sd: np.ndarray  # (4, 2) predicted standard deviation of the [-1, 1] square's corners, x and y


def robust_homography(src: np.ndarray, dst: np.ndarray, start: np.ndarray, scale: float,
                      iterations: int = 30) -> RobustFit:
    """Homography src -> dst minimising a Cauchy loss of the geometric residuals, from ``start``.

    ``scale``: the residual (in the points' units) at which a point's weight halves. Gauss-Newton
    with re-weighting; the corners' standard deviations (in the points' units) come from the
    weighted residual variance and the normal matrix (the corners of the [-1, 1] square: the image
    corners in normalised coordinates).
    """
    if len(src) != len(dst) or len(src) < 8:
        raise ValueError(f"need at least 8 point pairs of equal count, got {len(src)} and {len(dst)}")
    params = (start / start[2, 2]).ravel()[:8].astype(np.float64)
    for _ in range(iterations):
        proj, jac = project(params, src)
        res = (proj - dst) / scale
        weight = robust_weight((res**2).sum(axis=1))
        normal = np.einsum("n,nki,nkj->ij", weight, jac, jac) / scale**2
        step = np.linalg.solve(normal + 1e-12 * np.eye(8), -np.einsum("n,nki,nk->i", weight, jac, res) / scale)
        params = params + step
        if np.abs(step).max() < 1e-10:
            break
    proj, jac = project(params, src)
    res2 = ((proj - dst) ** 2).sum(axis=1)
    weight = robust_weight(res2 / scale**2)
    variance = float((weight * res2).sum() / max(2 * weight.sum() - 8, 1.0))  # per coordinate
    normal = np.einsum("n,nki,nkj->ij", weight, jac, jac)
    homography = np.append(params, 1.0).reshape(3, 3)
    eigen, vectors = np.linalg.eigh(normal)
    if eigen[0] <= 1e-10 * eigen[-1]:  # the points leave some direction free (on one line, say)
        return RobustFit(homography, weight, np.full((4, 2), np.inf))
    _, corner_jac = project(params, _CORNERS)
    # covariance variance * normal^-1 through its eigenvectors: non-negative by construction
    corner_var = variance * ((corner_jac @ vectors) ** 2 / eigen).sum(axis=2)
    return RobustFit(homography, weight, np.sqrt(corner_var))
