"""The degradations drawn with OpenCV per sample: rain streaks and optical blur (rig motion, defocus).

They are cheap there and awkward to vectorise; :func:`_per_sample` lifts each single-pair numpy
function to the batched kernel signature of :mod:`rtfuse.degrade.physics`.
"""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np
import torch

from rtfuse import color
from rtfuse.degrade.physics import Kernel, Tensor

RAIN_ANGLE_DEG = 25.0  # wind tilt of streaks from vertical, uniform in +-


def rain_layer(h: int, w: int, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Streak intensity (H,W) float32 in [0,1]: a far layer of thin short streaks and a near layer
    of fewer, longer, wider, brighter ones, all tilted by one wind angle (+- 3 degrees jitter).

    Streak length is motion blur of falling drops during the exposure, so it grows with severity
    (heavier rain = larger, faster drops) and with image height.
    """
    layer = np.zeros((h, w), np.float32)
    angle = math.radians(rng.uniform(-RAIN_ANGLE_DEG, RAIN_ANGLE_DEG))
    density = rng.uniform(8.0, 16.0) * severity * h * w / 1000.0
    base_len = (0.02 + 0.05 * severity) * h
    for count_frac, len_frac, width, level in ((1.0, 1.0, 1, 0.5), (0.15, 2.2, 1, 0.9)):
        canvas = np.zeros((h, w), np.uint8)
        n = int(round(density * count_frac))
        lengths = base_len * len_frac * rng.uniform(0.7, 1.3, n)
        angles = angle + rng.normal(0.0, math.radians(3.0), n)
        x0 = rng.uniform(-0.1 * w, 1.1 * w, n)
        y0 = rng.uniform(-0.2 * h, h, n)
        x1, y1 = x0 + lengths * np.sin(angles), y0 + lengths * np.cos(angles)
        values = 255.0 * level * rng.uniform(0.6, 1.0, n)
        for a, bb, c, d, v in zip(x0, y0, x1, y1, values):
            p0 = (int(round(a * 16)), int(round(bb * 16)))
            p1 = (int(round(c * 16)), int(round(d * 16)))
            cv2.line(canvas, p0, p1, int(v), width, cv2.LINE_AA, shift=4)
        layer = np.maximum(layer, canvas.astype(np.float32) / 255.0)
    return cv2.GaussianBlur(layer, (0, 0), 0.6)


def _rain_one(vis: np.ndarray, ir: np.ndarray, s: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = ir.shape
    streaks = rain_layer(h, w, s, rng)
    # Drops refract light from a wide field of view, so streaks are about as bright as the scene's
    # bright parts: dim at night, near white by day. Screen blending keeps the result in [0,1].
    luma = color.luma(vis)
    env = 0.35 + 0.65 * float(np.percentile(luma, 95))
    out = 1.0 - (1.0 - vis) * (1.0 - env * streaks[..., None])
    # Rain also veils the scene (spray, accumulated drops along the line of sight).
    t = 1.0 - 0.25 * s
    out = out * t + 0.9 * env * (1.0 - t)
    # LWIR: drops are at air temperature and nearly invisible; rain only lowers thermal contrast.
    m = float(ir.mean())
    return out, m + (ir - m) * (1.0 - 0.15 * s)


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """Normalised line PSF of a straight motion of ``length`` pixels at ``angle`` radians."""
    size = 2 * int(math.ceil(length / 2.0)) + 3
    k = np.zeros((size, size), np.float64)
    c = size // 2
    t = np.linspace(-length / 2.0, length / 2.0, max(2, int(length * 4)))
    xs, ys = c + t * math.cos(angle), c + t * math.sin(angle)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (y0 + dy, x0 + dx), wgt)
    return (k / k.sum()).astype(np.float32)


def disk_kernel(radius: float) -> np.ndarray:
    """Normalised defocus PSF: a disk of ``radius`` pixels with an anti-aliased rim."""
    size = 2 * int(math.ceil(radius)) + 3
    c = size // 2
    yy, xx = np.mgrid[:size, :size]
    k = np.clip(radius + 0.5 - np.hypot(xx - c, yy - c), 0.0, 1.0)
    return (k / k.sum()).astype(np.float32)


def _blur_one(vis: np.ndarray, ir: np.ndarray, s: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    diag = math.hypot(*ir.shape)
    if rng.uniform() < 0.5:
        # Rig shake: both cameras share the motion.
        k = motion_kernel(1.0 + s * 0.03 * diag, rng.uniform(0.0, math.pi))
        k_ir = k
    else:
        # Defocus: each camera has its own lens and focus error.
        radius = s * 0.008 * diag
        k, k_ir = disk_kernel(radius), disk_kernel(radius * rng.uniform(0.4, 1.0))
    border = cv2.BORDER_REFLECT
    return cv2.filter2D(vis, -1, k, borderType=border), cv2.filter2D(ir, -1, k_ir, borderType=border)


def _per_sample(fn: Callable[[np.ndarray, np.ndarray, float, np.random.Generator], tuple[np.ndarray, np.ndarray]]) -> Kernel:
    """Lift a numpy single-pair function to the batched kernel signature (seeds drawn from gen)."""

    def kernel(vis: Tensor, ir: Tensor, s: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        seeds = torch.randint(0, 2**62, (vis.shape[0],), generator=gen, device=gen.device).tolist()
        vis_np = vis.detach().permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
        ir_np = ir.detach()[:, 0].cpu().numpy().astype(np.float32)
        outs = [fn(v, i, float(si), np.random.default_rng(seed)) for v, i, si, seed in zip(vis_np, ir_np, s.tolist(), seeds)]
        vis_d = torch.from_numpy(np.stack([o[0] for o in outs])).permute(0, 3, 1, 2)
        ir_d = torch.from_numpy(np.stack([o[1] for o in outs]))[:, None]
        return vis_d.to(vis), ir_d.to(ir)

    return kernel

