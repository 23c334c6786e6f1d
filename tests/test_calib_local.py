"""Block shifts and the robust homography fit of the fine registration level (issue 26)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rtfuse.calib import local


def _field(img: np.ndarray) -> np.ndarray:
    """(h, w, 2) doubled-angle orientation field of an image, as registration builds it."""
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    eps2 = float(np.median(gx * gx + gy * gy)) + 1e-6
    norm2 = gx * gx + gy * gy + eps2
    return np.stack([(gx * gx - gy * gy) / norm2, 2 * gx * gy / norm2], axis=-1)


def _texture(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0)


def test_block_shifts_recover_a_subpixel_translation_of_either_polarity():
    img = _texture()
    shift = np.float32([[1, 0, 2.3], [0, 1, -1.6]])  # content moves by (+2.3, -1.6)
    moved = cv2.warpAffine(1 - img, shift, (320, 240), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    found = local.block_shifts(_field(img), _field(moved), radius=6)
    assert len(found.centres) >= 50
    np.testing.assert_allclose(np.median(found.shifts, axis=0), [2.3, -1.6], atol=0.1)
    assert np.abs(found.shifts - [2.3, -1.6]).max() < 0.4


def test_blocks_without_a_distinct_shift_are_left_out():
    """A single straight edge fixes one direction only; a flat image fixes nothing."""
    edge = np.zeros((200, 200), np.float32)
    edge[:, 100:] = 1.0
    edge = cv2.GaussianBlur(edge, (0, 0), 1.0)
    assert len(local.block_shifts(_field(edge), _field(edge), radius=6).centres) == 0
    flat = np.full((200, 200), 0.5, np.float32)
    assert len(local.block_shifts(_field(flat), _field(flat), radius=6).centres) == 0


def test_block_shifts_check_their_inputs():
    with pytest.raises(ValueError, match="shape"):
        local.block_shifts(np.zeros((50, 50, 2)), np.zeros((50, 60, 2)), radius=4)
    with pytest.raises(ValueError, match="radius"):
        local.block_shifts(np.zeros((50, 50, 2)), np.zeros((50, 50, 2)), radius=1)


def _homography() -> np.ndarray:
    return np.array([[1.02, -0.03, 0.04], [0.025, 0.99, -0.03], [0.01, -0.015, 1.0]])


def test_robust_fit_is_barely_moved_by_outliers():
    rng = np.random.default_rng(3)
    src = rng.uniform(-0.9, 0.9, (120, 2))
    dst = cv2.perspectiveTransform(src.reshape(-1, 1, 2), _homography()).reshape(-1, 2)
    dst[:30] += rng.uniform(-0.3, 0.3, (30, 2))  # a quarter of the blocks matched something else
    fit = local.robust_homography(src, dst, np.eye(3), scale=0.005)
    np.testing.assert_allclose(fit.homography, _homography(), atol=1e-4)  # 0.03 px on a 640 px frame
    assert (fit.weights[30:] > 0.99).all() and (fit.weights[:30] < 0.5).mean() > 0.9


def test_robust_fit_corner_deviation_matches_monte_carlo():
    """The predicted corner standard deviation equals the spread of fits over noise draws."""
    rng = np.random.default_rng(4)
    src = rng.uniform(-0.5, 0.5, (60, 2))  # structure in the middle: the corners extrapolate
    clean = cv2.perspectiveTransform(src.reshape(-1, 1, 2), _homography()).reshape(-1, 2)
    corners = np.float64([[-1, -1], [1, -1], [1, 1], [-1, 1]]).reshape(-1, 1, 2)
    fitted, predicted = [], []
    for _ in range(200):
        fit = local.robust_homography(src, clean + rng.normal(0, 0.002, clean.shape), np.eye(3), scale=0.02)
        fitted.append(cv2.perspectiveTransform(corners, fit.homography).reshape(4, 2))
        predicted.append(fit.corner_sd)
    empirical = np.std(np.stack(fitted), axis=0)
    np.testing.assert_allclose(np.mean(predicted, axis=0), empirical, rtol=0.25)


def test_project_jacobian_matches_finite_differences():
    params = (_homography() / _homography()[2, 2]).ravel()[:8]
    pts = np.random.default_rng(5).uniform(-1, 1, (7, 2))
    _, jac = local.project(params, pts)
    for i in range(8):
        step = np.zeros(8)
        step[i] = 1e-6
        numeric = (local.project(params + step, pts)[0] - local.project(params - step, pts)[0]) / 2e-6
        np.testing.assert_allclose(jac[:, :, i], numeric, atol=1e-6)


def test_robust_fit_needs_eight_pairs():
    with pytest.raises(ValueError, match="at least 8"):
        local.robust_homography(np.zeros((5, 2)), np.zeros((5, 2)), np.eye(3), scale=0.01)


def test_a_degenerate_fit_has_unbounded_corners():
    """Points on one line fix nothing across it: the corners' deviation is infinite, not NaN."""
    x = np.linspace(-0.5, 0.5, 20)
    src = np.stack([x, np.zeros_like(x)], axis=1)
    fit = local.robust_homography(src, src + 0.01, np.eye(3), scale=0.01)
    assert np.isinf(fit.corner_sd).all()
