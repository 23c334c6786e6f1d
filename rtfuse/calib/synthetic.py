"""Known geometry to check a calibration method against: drawn rig warps and rendered target rigs.

Real pairs carry their own parallax, so an estimate cannot be scored against them alone. Two
references exist: a *known warp* applied to the infrared frame of a registered pair (the estimate
must undo it), and *self-consistency* (the estimate for the warped pair composed with the warp must
equal the estimate for the unwarped pair, whatever the pair's own offset). For target-based
calibration a rig is rendered: a chessboard at several poses seen by a visible camera and, through a
known homography, by a blurrier, noisier infrared camera with inverted polarity.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from rtfuse.calib.calibration import Size
from rtfuse.color import rgb_to_gray


@dataclass(frozen=True)
class WarpRange:
    """How far a rig's cameras may be misaligned: the ranges of the drawn warps."""

    rotation_deg: float = 5.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.08  # of the frame width (x) and height (y)
    perspective: float = 0.02  # corner scaling from the tilt, about +-this fraction


def draw_warp(rng: np.random.Generator, size: Size, limits: WarpRange = WarpRange()) -> np.ndarray:
    """A random homography (pixels to pixels of a ``size`` frame) within ``limits``, about the centre."""
    w, h = size
    angle = np.deg2rad(rng.uniform(-limits.rotation_deg, limits.rotation_deg))
    s = rng.uniform(*limits.scale)
    tx, ty = rng.uniform(-limits.shift, limits.shift, 2) * (w, h)
    gx, gy = rng.uniform(-limits.perspective, limits.perspective, 2) / (w / 2, h / 2)
    centre = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1.0]])
    similar = np.array([[s * np.cos(angle), -s * np.sin(angle), tx], [s * np.sin(angle), s * np.cos(angle), ty], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, 1, 0], [gx, gy, 1.0]])
    hom = centre @ similar @ tilt @ np.linalg.inv(centre)
    return hom / hom[2, 2]


def warp_frame(img: np.ndarray, hom: np.ndarray) -> np.ndarray:
    """``img`` seen through ``hom`` (same size), black where the warp leaves the frame."""
    h, w = img.shape[:2]
    return cv2.warpPerspective(img, hom, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@dataclass(frozen=True)
class TargetRig:
    """Rendered frames of a target seen by both cameras of a rig with a known homography."""

    vis: list[np.ndarray]  # uint8 RGB
    ir: list[np.ndarray]  # uint8 gray
    homography: np.ndarray  # IR pixels -> visible pixels
    vis_size: Size
    ir_size: Size


def _board(kind: str, inner: tuple[int, int], square_px: int = 60, margin: int = 40) -> np.ndarray:
    """The printed target (dark on white) with a white margin.

    ``chessboard``: ``inner`` (cols, rows) inner corners; ``circles``: an asymmetric grid of
    (cols, rows) dots, numbered as OpenCV's ``findCirclesGrid`` numbers them.
    """
    cols, rows = inner
    if kind == "chessboard":
        yy, xx = np.mgrid[0:(rows + 1) * square_px, 0:(cols + 1) * square_px]
        board = np.where(((yy // square_px) + (xx // square_px)) % 2 == 0, 0, 255).astype(np.uint8)
    else:
        step = square_px // 2
        board = np.full(((rows + 1) * step, (2 * cols + 1) * step), 255, np.uint8)
        shift = 4  # subpixel circle centres for cv2.circle
        for i in range(rows):
            for j in range(cols):
                centre = (round(((2 * j + i % 2) + 1) * step * 2**shift), round((i + 1) * step * 2**shift))
                cv2.circle(board, centre, round(0.35 * step * 2**shift), 0, -1, cv2.LINE_AA, shift)
    return cv2.copyMakeBorder(board, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255)


def _board_pose(rng: np.random.Generator, board_size: Size, frame: Size) -> np.ndarray:
    """Board pixels -> frame pixels: the board spans 50-80% of the frame, tilted and turned."""
    bw, bh = board_size
    w, h = frame
    s = rng.uniform(0.5, 0.8) * min(w / bw, h / bh)
    angle = np.deg2rad(rng.uniform(-20, 20))
    cx = rng.uniform(0.35, 0.65) * w
    cy = rng.uniform(0.35, 0.65) * h
    to_centre = np.array([[1, 0, -bw / 2], [0, 1, -bh / 2], [0, 0, 1.0]])
    tilt = np.array([[1, 0, 0], [0, 1, 0], [*(rng.uniform(-0.25, 0.25, 2) / (bw, bh)), 1.0]])
    rot = np.array([[s * np.cos(angle), -s * np.sin(angle), cx], [s * np.sin(angle), s * np.cos(angle), cy], [0, 0, 1]])
    return rot @ tilt @ to_centre


def _fit(img: np.ndarray, size: Size) -> np.ndarray:
    """The scaling that maps an image's pixels onto a frame of ``size``."""
    return np.diag([size[0] / img.shape[1], size[1] / img.shape[0], 1.0])


def _render(board: np.ndarray, pose: np.ndarray, frame: Size, background: np.ndarray, supersample: int = 4) -> np.ndarray:
    """The board warped into a frame, antialiased by rendering at ``supersample`` times the size."""
    w, h = frame
    up = np.diag([supersample, supersample, 1.0])
    # pixel centres: a frame pixel x covers [x - 0.5, x + 0.5]; so does the supersampled block
    shift = np.array([[1, 0, (supersample - 1) / 2], [0, 1, (supersample - 1) / 2], [0, 0, 1.0]])
    big_bg = cv2.resize(background, (w * supersample, h * supersample), interpolation=cv2.INTER_LINEAR)
    big = cv2.warpPerspective(board, shift @ up @ pose, (w * supersample, h * supersample), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = cv2.warpPerspective(np.ones_like(board), shift @ up @ pose, (w * supersample, h * supersample), flags=cv2.INTER_NEAREST)
    big = np.where(mask > 0, big, big_bg)
    return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)


def render_target_rig(
    rng: np.random.Generator,
    kind: str = "chessboard",
    inner: tuple[int, int] = (9, 6),
    frames: int = 6,
    vis_size: Size = (640, 480),
    ir_size: Size = (640, 512),
    ir_blur: float = 1.2,
    ir_noise: float = 4.0,
    scene: tuple[np.ndarray, np.ndarray] | None = None,
) -> TargetRig:
    """A rig whose infrared camera sees the visible frame through a drawn warp, and target frames.

    The infrared frames are blurred (``ir_blur`` sigma, pixels), noisier (``ir_noise`` grey levels)
    and of inverted polarity (a heated board: the printed dark squares are hot, so bright). The
    board is held in front of smooth random backgrounds, or of a real registered ``scene``
    (visible, infrared), which the infrared camera then sees through the rig's warp too.
    """
    board = _board(kind, inner)
    board_size = (board.shape[1], board.shape[0])
    # visible -> IR: a drawn misalignment, then the resize between the two sensors' grids
    resize = np.diag([ir_size[0] / vis_size[0], ir_size[1] / vis_size[1], 1.0])
    vis_to_ir = resize @ draw_warp(rng, vis_size)
    ir_to_vis = np.linalg.inv(vis_to_ir)
    vis_frames, ir_frames = [], []
    for _ in range(frames):
        pose = _board_pose(rng, board_size, vis_size)
        if scene is None:
            vis_bg = cv2.resize(rng.uniform(60, 200, (6, 8)).astype(np.float32), vis_size, interpolation=cv2.INTER_CUBIC)
            ir_bg = cv2.resize(rng.uniform(40, 90, (4, 5)).astype(np.float32), ir_size, interpolation=cv2.INTER_CUBIC)
        else:
            vis_bg = cv2.resize(rgb_to_gray(scene[0]), vis_size, interpolation=cv2.INTER_AREA).astype(np.float32)
            ir_bg = cv2.warpPerspective(rgb_to_gray(scene[1]), vis_to_ir @ _fit(scene[1], vis_size), ir_size,
                                        flags=cv2.INTER_LINEAR).astype(np.float32)
        vis = _render(board.astype(np.float32), pose, vis_size, vis_bg)
        vis = np.clip(vis + rng.normal(0, 1.5, vis.shape), 0, 255).astype(np.uint8)
        vis_frames.append(np.repeat(vis[..., None], 3, axis=2))
        hot = 255.0 - board.astype(np.float32) * 0.6  # dark squares hot: bright; paper cooler
        ir = _render(hot, vis_to_ir @ pose, ir_size, ir_bg)
        ir = cv2.GaussianBlur(ir, (0, 0), ir_blur)
        ir_frames.append(np.clip(ir + rng.normal(0, ir_noise, ir.shape), 0, 255).astype(np.uint8))
    return TargetRig(vis=vis_frames, ir=ir_frames, homography=ir_to_vis / ir_to_vis[2, 2], vis_size=vis_size, ir_size=ir_size)
