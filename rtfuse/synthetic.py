"""Procedural infrared/visible scene: the embedded default source that runs anywhere.

A textured background (sky, ground, buildings) is rendered once; warm targets (people, vehicles)
move across it and are composited per frame from pre-rendered sprites, so a 640x480 frame costs
about a millisecond. In visible light the targets are dim and low-contrast (night, camouflage); in
infrared they glow. Everything is a pure function of (seed, frame index), so runs are reproducible.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from rtfuse.errors import RtfuseError


@dataclass(frozen=True)
class _Target:
    x0: float
    y0: float
    vx: float
    vy: float
    vis_sprite: np.ndarray  # (h,w,3) float32 RGB in [0,1]
    ir_sprite: np.ndarray  # (h,w) float32 in [0,1]
    alpha: np.ndarray  # (2,h,w) float32 coverage in [0,1]: visible, infrared


def _noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    """Multi-octave value noise in [0,1]: cheap natural-looking texture without scipy."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        gh, gw = max(2, h >> (octaves - o + 1)), max(2, w >> (octaves - o + 1))
        grid = rng.random((gh, gw), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.55
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Static scene: sky over textured ground with a few buildings, in both modalities."""
    tex = _noise(rng, h, w)
    fine = _noise(rng, h, w, octaves=3)
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    horizon = 0.4
    sky = rows < horizon
    vis = np.empty((h, w, 3), np.float32)
    ground = 0.18 + 0.22 * tex + 0.08 * fine
    vis[..., 0] = np.where(sky, 0.25 + 0.2 * rows, ground * 0.9)
    vis[..., 1] = np.where(sky, 0.30 + 0.2 * rows, ground)
    vis[..., 2] = np.where(sky, 0.45 + 0.1 * rows, ground * 0.8)
    ir = np.where(sky, 0.08 + 0.05 * tex, 0.3 + 0.25 * tex + 0.1 * fine).astype(np.float32)
    for _ in range(int(rng.integers(3, 6))):
        bw, bh = int(rng.integers(w // 12, w // 5)), int(rng.integers(h // 8, h // 3))
        bx = int(rng.integers(0, max(1, w - bw)))
        by = int(h * horizon) - bh + int(rng.integers(0, h // 10))
        shade = float(rng.uniform(0.25, 0.55))
        vis[by : by + bh, bx : bx + bw] = (shade, shade * 0.95, shade * 0.9)
        ir[by : by + bh, bx : bx + bw] = float(rng.uniform(0.35, 0.5))
        for wy in range(by + 6, by + bh - 8, 14):
            for wx in range(bx + 5, bx + bw - 8, 12):
                if rng.random() < 0.4:
                    vis[wy : wy + 6, wx : wx + 5] = (0.9, 0.85, 0.5)
                    ir[wy : wy + 6, wx : wx + 5] = 0.6
    return np.clip(vis, 0, 1), np.clip(ir, 0, 1)


def _target(rng: np.random.Generator, h: int, w: int) -> _Target:
    """A person (tall ellipse) or vehicle (wide box): dim in visible light, warm in infrared."""
    scale = max(h, w) / 640.0
    person = rng.random() < 0.6
    th, tw = (int(48 * scale), int(18 * scale)) if person else (int(30 * scale), int(60 * scale))
    th, tw = max(th, 4), max(tw, 4)
    pad = max(2, int(6 * scale))
    sh, sw = th + 2 * pad, tw + 2 * pad
    mask = np.zeros((sh, sw), np.float32)
    if person:
        cv2.ellipse(mask, (sw // 2, sh // 2), (tw // 2, th // 2), 0, 0, 360, 1.0, -1)
    else:
        cv2.rectangle(mask, (pad, pad), (pad + tw - 1, pad + th - 1), 1.0, -1)
    alpha = cv2.GaussianBlur(mask, (0, 0), 1.0)
    colour = rng.uniform(0.05, 0.3, 3).astype(np.float32)
    vis_sprite = np.broadcast_to(colour, (sh, sw, 3)).astype(np.float32)
    heat = float(rng.uniform(0.8, 1.0))
    ir_sprite = np.clip(cv2.GaussianBlur(mask, (0, 0), 2.0 * max(scale, 0.5)) * heat * 1.1, 0, 1)
    ir_alpha = np.maximum(alpha, cv2.GaussianBlur(mask, (0, 0), 2.0 * max(scale, 0.5)))
    speed = float(rng.uniform(0.5, 2.5)) * scale * (1 if rng.random() < 0.5 else -1)
    return _Target(
        x0=float(rng.uniform(0, w - sw)),
        y0=float(rng.uniform(h * 0.42, max(h * 0.42 + 1, h - sh))),
        vx=speed,
        vy=float(rng.uniform(-0.2, 0.2)) * scale,
        vis_sprite=vis_sprite,
        ir_sprite=ir_sprite,
        alpha=np.stack([alpha, ir_alpha]),
    )


def _bounce(p0: float, v: float, t: int, span: float) -> int:
    """Position of a point moving at speed v that reflects off [0, span]."""
    if span <= 0:
        return 0
    p = (p0 + v * t) % (2 * span)
    return int(round(2 * span - p if p > span else p))


class SyntheticScene:
    """Deterministic IR/visible video: ``render(i)`` gives frame i of the clip.

    ``degrade`` is a degradation spec for ``rtfuse.degrade`` (e.g. "haze" or "lowlight+noise");
    ``ir_bits=16`` emits 16-bit infrared like a radiometric camera, to exercise gain control.
    """

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        seed: int = 0,
        targets: int = 5,
        degrade: str | None = None,
        ir_bits: int = 8,
    ):
        if width < 16 or height < 16:
            raise RtfuseError(f"synthetic scene must be at least 16x16, got {width}x{height}")
        if ir_bits not in (8, 16):
            raise RtfuseError(f"synthetic infrared bit depth must be 8 or 16, got {ir_bits}")
        self.width, self.height, self.seed, self.ir_bits = width, height, seed, ir_bits
        rng = np.random.default_rng(seed)
        self._vis_bg, self._ir_bg = _background(rng, height, width)
        self._targets = [_target(rng, height, width) for _ in range(targets)]
        self._degrade = self._load_degrade(degrade) if degrade else None
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}

    @staticmethod
    def _load_degrade(spec: str):
        try:
            from rtfuse.degrade import degrade_pair, parse_spec
        except ImportError as exc:
            raise RtfuseError(f"synthetic degradation {spec!r} needs rtfuse.degrade, which is not available") from exc
        parsed = parse_spec(spec)
        return lambda vis, ir, seed: degrade_pair(vis, ir, parsed, seed)

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``index``: visible uint8 RGB (H,W,3) and infrared gray (H,W) uint8 or uint16."""
        vis, ir, _ = self.shot(index)
        return vis, ir

    def shot(self, index: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Frame ``index`` and its shutter time (time.monotonic() when it was rendered).

        The two capture threads each ask for their half; the pair is rendered once and cached,
        so both halves carry the same stamp, as from a hardware-triggered rig.
        """
        with self._lock:
            hit = self._cache.get(index)
            if hit is None:
                vis, ir = self._render(index)
                hit = (vis, ir, time.monotonic())
                self._cache = {k: v for k, v in self._cache.items() if k > index - 8}
                self._cache[index] = hit
            return hit

    def _render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        vis = self._vis_bg.copy()
        ir = self._ir_bg.copy()
        for t in self._targets:
            sh, sw = t.ir_sprite.shape
            x = _bounce(t.x0, t.vx, index, self.width - sw)
            y = _bounce(t.y0, t.vy, index, self.height - sh)
            va, ia = t.alpha[0][..., None], t.alpha[1]
            vroi = vis[y : y + sh, x : x + sw]
            vroi[:] = vroi * (1 - va) + t.vis_sprite * va
            iroi = ir[y : y + sh, x : x + sw]
            iroi[:] = np.maximum(iroi, t.ir_sprite * ia + iroi * (1 - ia))
        if self._degrade is not None:
            vis, ir = self._degrade(vis, ir, self.seed)
            vis, ir = np.clip(vis, 0, 1), np.clip(ir, 0, 1)
        vis8 = (vis * 255 + 0.5).astype(np.uint8)
        if self.ir_bits == 16:
            # radiometric counts: an offset and a narrow used range, as real 14/16-bit cameras give
            irq = (ir * 12000 + 20000 + 0.5).astype(np.uint16)
        else:
            irq = (ir * 255 + 0.5).astype(np.uint8)
        return vis8, irq
