"""Physically grounded degradations of a registered infrared/visible pair.

Training, the robustness mode of the evaluator and the synthetic source need degraded inputs whose
clean references are known. Each degradation models the physics that causes it (atmospheric
scattering, photon shot noise, lens bloom, rain streaks, microbolometer fixed-pattern noise, optical
blur) with one ``severity`` in [0, 1] (0 = identity) and a seed, so that results are reproducible.

One implementation serves both APIs: the kernels work on batched torch tensors (B,3,H,W)/(B,1,H,W)
with per-sample severities, and :func:`degrade_pair` wraps them for a single numpy pair. Rain and
blur draw with OpenCV per sample (they are cheap there and awkward to vectorise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from rtfuse import color
from rtfuse.color import LUMA_WEIGHTS, luminance
from rtfuse.errors import RtfuseError
from rtfuse.model.config import DEGRADATION_CLASSES as CLASSES

Tensor = torch.Tensor
Kernel = Callable[[Tensor, Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Degradation:
    """One registered degradation: its stage-1 class, its place in the imaging chain, its kernel."""

    name: str
    label: str
    order: int
    apply: Kernel
    vectorised: bool
    summary: str


# ----------------------------------------------------------------------------- small helpers

# Display <-> linear light. Scattering, exposure and bloom are linear in radiance, so they are
# applied to linearised images and re-encoded with gamma 2 (square / square root): close to sRGB's
# ~2.2 and several times cheaper than a fractional power on the CPU.
def _lin(x: Tensor) -> Tensor:
    x = x.clamp(0.0, 1.0)
    return x * x


def _enc(x: Tensor) -> Tensor:
    return x.clamp(0.0, 1.0).sqrt()


def _uniform(gen: torch.Generator, shape: tuple[int, ...], like: Tensor, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """Uniform draws from ``gen`` (on its own device) moved to ``like``'s device."""
    r = torch.rand(shape, generator=gen, device=gen.device, dtype=torch.float32)
    return (lo + (hi - lo) * r).to(device=like.device, dtype=like.dtype)


def _normal(gen: torch.Generator, shape: tuple[int, ...], like: Tensor) -> Tensor:
    r = torch.randn(shape, generator=gen, device=gen.device, dtype=torch.float32)
    return r.to(device=like.device, dtype=like.dtype)


def _col(v: Tensor) -> Tensor:
    """Per-sample scalar (B,) -> broadcastable (B,1,1,1)."""
    return v.view(-1, 1, 1, 1)


def _blur_matrix(n: int, sigma: float, like: Tensor) -> Tensor:
    """Gaussian blur along one axis of length n as an (n, n) matrix with replicated borders.

    On small downsampled images a matrix product is far faster on the CPU than a depthwise conv.
    """
    radius = max(1, int(math.ceil(3.0 * sigma)))
    taps = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype)
    k = torch.exp(-0.5 * (taps / sigma) ** 2)
    k = k / k.sum()
    src = (torch.arange(n, device=like.device).view(-1, 1) + taps.long().view(1, -1)).clamp(0, n - 1)
    m = torch.zeros(n, n, device=like.device, dtype=like.dtype)
    return m.scatter_add_(1, src, k.expand(n, -1).contiguous())


def smooth(x: Tensor, sigma: float, reduce: str = "mean") -> Tensor:
    """Wide Gaussian blur (sigma in pixels) of (B,C,H,W), computed on a downsampled copy.

    Depth cues and bloom only need the low-pass result, so a pyramid step keeps it cheap at any
    sigma; the upsampled result differs from a full-resolution blur by far less than its noise.
    ``reduce="min"`` downsamples by block minimum instead (a dark channel over that block).
    """
    h, w = x.shape[-2:]
    factor = max(1, int(sigma // 2))
    small = x
    if factor > 1 and reduce == "min":
        small = -F.max_pool2d(-x, factor, stride=factor, ceil_mode=True)
    elif factor > 1:
        small = F.avg_pool2d(x, factor, stride=factor, ceil_mode=True)
    sigma_small = max(sigma / factor, 0.5)
    sh, sw = small.shape[-2:]
    small = _blur_matrix(sh, sigma_small, x) @ small @ _blur_matrix(sw, sigma_small, x).T
    if factor > 1:
        small = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return small


def depth_proxy(vis: Tensor, horizon: Tensor) -> Tensor:
    """Relative scene depth in [0,1] (1 = far) for haze, from geometry and the dark channel.

    A camera looking along a ground plane sees depth grow as 1/(row - horizon) towards the horizon;
    everything above the horizon is treated as far. Bright, colourless regions (high dark channel,
    He et al. 2009) are usually sky or distant haze-prone surfaces, so a smoothed dark channel is
    blended in to break the pure row gradient. ``horizon`` is the per-sample horizon row in [0,1].
    """
    b, _, h, w = vis.shape
    rows = (torch.arange(h, device=vis.device, dtype=vis.dtype) + 0.5) / h
    below = (rows.view(1, -1) - horizon.view(-1, 1)).clamp(min=0.0)
    d_row = (0.08 / (below + 0.08)).view(b, 1, h, 1)
    cue = smooth(vis.amin(1, keepdim=True), 0.03 * math.hypot(h, w), reduce="min")
    return (0.7 * d_row + 0.3 * cue).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- kernels (torch)

HAZE_BETA_MAX = 3.0  # extinction x depth at severity 1: far transmission exp(-3) = 0.05
IR_HAZE_RATIO = 0.15  # LWIR (8-14 um) scatters far less on haze/fog droplets than visible light


def _haze(vis: Tensor, ir: Tensor, s: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    b = vis.shape[0]
    r = _uniform(gen, (b, 5), vis)
    depth = depth_proxy(vis, 0.30 + 0.25 * r[:, 0])
    beta = _col(HAZE_BETA_MAX * s)
    t = torch.exp(-beta * depth)
    tint = vis.new_tensor([0.0, 0.01, 0.03]).view(1, 3, 1, 1)
    airlight = _col(0.75 + 0.2 * r[:, 1]) + 0.015 * (2.0 * r[:, 2:5].view(b, 3, 1, 1) - 1.0) + tint
    lin = _lin(vis)
    # Airlight is ambient light scattered towards the camera, so it follows the illumination: a
    # bright veil by day, a dark one at night (mean linear luminance ~0.2 is a daylit scene).
    ambient = (luminance(lin).mean(dim=(2, 3), keepdim=True) / 0.2).clamp(max=1.0)
    vis_d = _enc(lin * t + _lin(airlight.clamp(0.0, 1.0)) * ambient * (1.0 - t))
    t_ir = torch.exp(-IR_HAZE_RATIO * beta * depth)
    path = ir.mean(dim=(2, 3), keepdim=True)  # path radiance of air at ambient temperature
    ir_d = ir * t_ir + path * (1.0 - t_ir)
    return vis_d, ir_d


LOW_LIGHT_K_MIN = (0.02, 0.05)  # exposure factor at severity 1 (5.6 to 4.3 stops darker)


def _low_light(vis: Tensor, ir: Tensor, s: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    b = vis.shape[0]
    r = _uniform(gen, (b, 5), vis)
    k_min = LOW_LIGHT_K_MIN[0] + (LOW_LIGHT_K_MIN[1] - LOW_LIGHT_K_MIN[0]) * r[:, 0]
    k = _col(torch.exp(s * torch.log(k_min)))
    # Night illuminants: mostly warm (sodium, tungsten), sometimes cool (moonlight, LED); gains
    # are luminance-neutral so the cast changes hue, not exposure.
    warm, cool = vis.new_tensor([0.5, 0.0, -0.6]), vis.new_tensor([-0.3, 0.0, 0.35])
    mix = (r[:, 1] < 0.75).to(vis.dtype).view(b, 1)
    direction = mix * warm + (1.0 - mix) * cool
    gains = torch.exp(0.5 * s.view(b, 1) * direction)
    gains = gains / (gains * vis.new_tensor(LUMA_WEIGHTS)).sum(1, keepdim=True)
    lin = _lin(vis) * gains.view(b, 3, 1, 1) * k
    # Poisson-Gaussian sensor noise in its heteroscedastic Gaussian form (Foi et al. 2008):
    # variance = signal / photons + read^2, exact in mean and variance, and ~20x cheaper than
    # torch.poisson. The clean frame already carries the noise of a full exposure, so the added
    # photon budget is that of the missing light: P / (1 - k) photons at full scale.
    photons = _col(10.0 ** (2.7 + 1.0 * r[:, 2])) / (1.0 - k).clamp(min=1e-6)
    read = _col(0.001 + 0.003 * r[:, 3]) * (1.0 - k)
    std = (lin / photons + read * read).sqrt()
    noisy = lin + std * _normal(gen, tuple(lin.shape), lin)
    # Camera tone curve under low light crushes the shadows further (gamma > 1 in display space).
    tone = _col(1.0 + s * (0.2 + 0.3 * r[:, 4]))
    return _enc(noisy) ** tone, ir


OVEREXPOSURE_CLIP = (0.3, 0.5)  # share of the frame newly driven into saturation at severity 1
OVEREXPOSURE_GAIN_CAP = 64.0  # 6 stops: beyond this a sensor's noise floor would dominate anyway
BLOOM_SIGMAS = ((0.01, 0.5), (0.03, 0.3), (0.08, 0.2))  # (sigma / image diagonal, weight)


def overexposure_gain(lin_luma: Tensor, share: Tensor) -> Tensor:
    """Per-sample exposure gain that saturates ``share`` more of the frame than is already clipped.

    Overexposure is defined by its effect, clipped highlights, not by a fixed number of stops: two
    stops over make a bright day scene white but only bring a night scene up to a normal-looking
    exposure, which no observer (or classifier) could call overexposed.
    """
    flat = lin_luma.flatten(1)
    if flat.shape[1] > 65536:  # the quantile of a regular subsample is as good and much cheaper
        flat = flat[:, :: flat.shape[1] // 65536]
    target = ((flat >= 0.98).to(flat.dtype).mean(1) + share).clamp(max=0.9)
    rank = ((1.0 - target) * (flat.shape[1] - 1)).round().long().view(-1, 1)
    level = flat.sort(dim=1).values.gather(1, rank).squeeze(1)
    return (1.0 / level.clamp(min=1.0 / OVEREXPOSURE_GAIN_CAP)).clamp(min=1.0)


def _overexposure(vis: Tensor, ir: Tensor, s: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    b, _, h, w = vis.shape
    r = _uniform(gen, (b, 2), vis)
    share = s * (OVEREXPOSURE_CLIP[0] + (OVEREXPOSURE_CLIP[1] - OVEREXPOSURE_CLIP[0]) * r[:, 0])
    lin = _lin(vis) * _col(overexposure_gain(luminance(_lin(vis)), share))
    # Lens bloom/veiling glare: light above ~the saturation point scatters in the optics with a
    # heavy-tailed PSF (sum of Gaussians). A clipped pixel's true radiance is unknown, so the excess
    # over 0.8 stands in for the energy that the sensor could not record.
    excess = (luminance(lin) - 0.8).clamp(min=0.0)
    source = lin / luminance(lin).clamp(min=1e-6) * excess
    diag = math.hypot(h, w)
    bloom = sum(weight * smooth(source, frac * diag) for frac, weight in BLOOM_SIGMAS)
    strength = _col(s * (0.5 + 1.0 * r[:, 1]))
    return _enc(lin + strength * bloom), ir


def _noise(vis: Tensor, ir: Tensor, s: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    b, _, h, w = ir.shape
    sc = _col(s)
    r = _uniform(gen, (b, 3), vis, 0.7, 1.3)
    # Visible: heteroscedastic (shot + read) noise of a demosaiced colour sensor, per channel.
    var = (0.1 * sc * _col(r[:, 0])) ** 2 * vis + (0.03 * sc) ** 2
    vis_d = vis + var.sqrt() * _normal(gen, tuple(vis.shape), vis)
    # Infrared (uncooled microbolometer): low contrast from a narrow scene temperature span,
    # per-pixel gain non-uniformity, column offsets of the readout amplifiers (stripes), weaker row
    # offsets, and temporal noise.
    mean = ir.mean(dim=(2, 3), keepdim=True)
    ir_d = mean + (ir - mean) * (1.0 - 0.6 * sc)
    ir_d = ir_d * (1.0 + 0.04 * sc * _normal(gen, (b, 1, h, w), ir))
    ir_d = ir_d + 0.06 * sc * _col(r[:, 1]) * _normal(gen, (b, 1, 1, w), ir)
    ir_d = ir_d + 0.015 * sc * _normal(gen, (b, 1, h, 1), ir)
    ir_d = ir_d + 0.03 * sc * _col(r[:, 2]) * _normal(gen, (b, 1, h, w), ir)
    return vis_d, ir_d


# ----------------------------------------------------------------------------- kernels (OpenCV)

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


# ----------------------------------------------------------------------------- registry

# Physical order of the imaging chain: rain streaks sit in the scene and are attenuated by the haze
# between them and the camera (heavy-rain model I = T(J + R) + (1 - T)A); optics blur acts on the
# incoming light; scene illumination scales everything, the haze veil included (night fog is dark);
# glare comes from what is still bright; sensor noise is added last.
DEGRADATIONS: dict[str, Degradation] = {
    d.name: d
    for d in (
        Degradation("rain", "rain", 0, _per_sample(_rain_one), False,
                    "rain streaks (two depth layers, wind angle) + veil, visible; weak IR contrast loss"),
        Degradation("haze", "haze", 1, _haze, True,
                    "atmospheric scattering I = J t + A (1 - t), t = exp(-beta d); IR with beta x 0.15"),
        Degradation("blur", "noise", 2, _per_sample(_blur_one), False,
                    "rig motion blur (both) or defocus (each camera its own radius)"),
        Degradation("low_light", "low_light", 3, _low_light, True,
                    "exposure x k, colour cast, Poisson-Gaussian noise, shadow-crushing tone; visible only"),
        Degradation("overexposure", "overexposure", 4, _overexposure, True,
                    "exposure gain, sensor saturation, lens bloom around highlights; visible only"),
        Degradation("noise", "noise", 5, _noise, True,
                    "visible shot+read noise; IR low contrast, gain FPN, column/row stripes, temporal noise"),
    )
}

# Composite scenes (the paper's composite degradations). A composite at severity s applies each
# component at severity s * weight, in the physical order above.
COMPOSITES: dict[str, tuple[tuple[str, float], ...]] = {
    "night_fog": (("haze", 0.7), ("low_light", 0.7)),
    "rainy_night": (("rain", 1.0), ("low_light", 0.8), ("noise", 0.5)),
    "hazy_glare": (("haze", 0.6), ("overexposure", 0.5)),
}

Spec = Sequence[tuple[str, float]]


def _valid_kinds() -> str:
    return ", ".join([*DEGRADATIONS, *COMPOSITES])


def _expand(kind: str, severity: float) -> list[tuple[str, float]]:
    if kind in DEGRADATIONS:
        return [(kind, severity)]
    if kind in COMPOSITES:
        return [(part, min(1.0, severity * weight)) for part, weight in COMPOSITES[kind]]
    raise RtfuseError(f"unknown degradation {kind!r}; valid kinds: {_valid_kinds()}")


def _check_severity(kind: str, severity: float) -> float:
    if not (0.0 <= severity <= 1.0):  # also rejects NaN
        raise RtfuseError(f"severity of {kind!r} must be in [0, 1], got {severity}")
    return float(severity)


def normalise_spec(spec: str | Spec) -> list[tuple[str, float]]:
    """Validate a spec, expand composites, and sort it into physical order (stable)."""
    items = parse_spec(spec) if isinstance(spec, str) else list(spec)
    steps: list[tuple[str, float]] = []
    for kind, severity in items:
        steps.extend(_expand(kind, _check_severity(kind, severity)))
    return sorted(steps, key=lambda step: DEGRADATIONS[step[0]].order)


def parse_spec(text: str) -> list[tuple[str, float]]:
    """Parse ``"haze:0.6,low_light:0.3"``; composite names expand to their components.

    An empty string or ``"clean"`` means no degradation.
    """
    steps: list[tuple[str, float]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item or item == "clean":
            continue
        kind, sep, value = item.partition(":")
        kind = kind.strip()
        if kind not in DEGRADATIONS and kind not in COMPOSITES:
            raise RtfuseError(f"unknown degradation {kind!r} in {text!r}; valid kinds: {_valid_kinds()}")
        if not sep:
            raise RtfuseError(f"{item!r}: give a severity in [0, 1] as KIND:SEVERITY, e.g. {kind}:0.5")
        try:
            severity = float(value)
        except ValueError:
            raise RtfuseError(f"{item!r}: severity {value.strip()!r} is not a number in [0, 1]") from None
        steps.extend(_expand(kind, _check_severity(kind, severity)))
    return steps


def class_targets(spec: str | Spec) -> np.ndarray:
    """Stage-1 target over CLASSES: the severity of each class present (max over its kinds);
    ``clean`` is 1 when nothing has a severity above 0."""
    target = np.zeros(len(CLASSES), np.float32)
    for kind, severity in normalise_spec(spec):
        i = CLASSES.index(DEGRADATIONS[kind].label)
        target[i] = max(target[i], severity)
    if not target[1:].any():
        target[0] = 1.0
    return target


# ----------------------------------------------------------------------------- public entry points


def _step_generator(seed: int, step: int, kind: str) -> torch.Generator:
    """Independent stream per (seed, position, kind), so adding a step never reshuffles the others."""
    kind_id = list(DEGRADATIONS).index(kind)
    state = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, step, kind_id]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


def _to_unit_float(img: np.ndarray, what: str) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(img, 0.0, 1.0).astype(np.float32)
    raise RtfuseError(f"{what}: unsupported dtype {img.dtype} (use float in [0,1] or uint8)")


def _from_unit_float(img: np.ndarray, dtype: np.dtype) -> np.ndarray:
    img = np.clip(img, 0.0, 1.0)
    if dtype == np.uint8:
        return np.round(img * 255.0).astype(np.uint8)
    return img.astype(dtype)


def degrade_pair(vis: np.ndarray, ir: np.ndarray, spec: str | Spec, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Degrade one registered pair: vis (H,W,3) RGB and ir (H,W), float in [0,1] (or uint8).

    Returns new arrays of the input dtypes and ranges; severity 0 (or an empty spec) returns
    unchanged copies. The same (inputs, spec, seed) always gives the same output.
    """
    if vis.ndim != 3 or vis.shape[2] != 3:
        raise RtfuseError(f"visible must be (H,W,3) RGB, got shape {vis.shape}")
    if ir.ndim != 2:
        raise RtfuseError(f"infrared must be (H,W), got shape {ir.shape}")
    if vis.shape[:2] != ir.shape:
        raise RtfuseError(f"visible {vis.shape[:2]} and infrared {ir.shape} differ in size (HxW); register them first")
    v = torch.from_numpy(_to_unit_float(vis, "visible")).permute(2, 0, 1)[None]
    i = torch.from_numpy(_to_unit_float(ir, "infrared"))[None, None]
    for step, (kind, severity) in enumerate(normalise_spec(spec)):
        if severity <= 0.0:
            continue
        s = torch.tensor([severity], dtype=torch.float32)
        v, i = DEGRADATIONS[kind].apply(v, i, s, _step_generator(seed, step, kind))
        v, i = v.clamp(0.0, 1.0), i.clamp(0.0, 1.0)
    vis_d = _from_unit_float(v[0].permute(1, 2, 0).numpy(), vis.dtype)
    ir_d = _from_unit_float(i[0, 0].numpy(), ir.dtype)
    return vis_d, ir_d


def degrade_batch(
    vis: Tensor,
    ir: Tensor,
    kinds: Sequence[str],
    severities: Tensor | Sequence[float],
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Degrade a batch: vis (B,3,H,W), ir (B,1,H,W) float in [0,1]; one kind per sample.

    ``kinds[b]`` is a degradation name, a composite name, or ``"clean"``; ``severities[b]`` in [0,1].
    Samples are grouped by kind and each group runs as one vectorised call (rain and blur loop
    per sample in OpenCV), so a DataLoader worker can call this on a whole batch. Inputs are not
    modified. Randomness comes only from ``generator`` (a fresh unseeded one if None).
    """
    b = vis.shape[0]
    if vis.ndim != 4 or vis.shape[1] != 3 or ir.ndim != 4 or ir.shape[1] != 1:
        raise RtfuseError(f"expected vis (B,3,H,W) and ir (B,1,H,W), got {tuple(vis.shape)} and {tuple(ir.shape)}")
    if ir.shape[0] != b or ir.shape[2:] != vis.shape[2:] or len(kinds) != b:
        raise RtfuseError(f"batch mismatch: vis {tuple(vis.shape)}, ir {tuple(ir.shape)}, {len(kinds)} kinds")
    sev = torch.as_tensor(severities, dtype=torch.float32).reshape(-1)
    if sev.numel() != b:
        raise RtfuseError(f"{sev.numel()} severities for a batch of {b}")
    if not bool(((sev >= 0.0) & (sev <= 1.0)).all()):
        raise RtfuseError(f"severities must be in [0, 1], got {sev.tolist()}")
    gen = generator if generator is not None else torch.Generator()
    if generator is None:
        gen.seed()
    out_v, out_i = vis.clone(), ir.clone()
    for name in sorted(set(kinds) - {"clean"}):
        members = [j for j, k in enumerate(kinds) if k == name]
        idx = torch.tensor(members, device=vis.device)
        for part, severity in normalise_spec([(name, 1.0)]):
            s = (sev[members] * severity).clamp(0.0, 1.0)
            active = s > 0.0
            if not bool(active.any()):
                continue
            sub = idx[active.to(idx.device)]
            s = s[active].to(device=vis.device, dtype=vis.dtype)
            v, i = DEGRADATIONS[part].apply(out_v[sub], out_i[sub], s, gen)
            out_v[sub] = v.clamp(0.0, 1.0)
            out_i[sub] = i.clamp(0.0, 1.0)
    return out_v, out_i


# ----------------------------------------------------------------------------- gallery

GALLERY_ROWS = (*DEGRADATIONS, *COMPOSITES)


def _label(img: np.ndarray, text: str, scale: float) -> None:
    """Draw white text with a dark outline at the top-left of an RGB uint8 tile, in place."""
    org = (4, int(18 * scale) + 2)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (255, 255, 255), 1, cv2.LINE_AA)


def render_gallery(
    vis: np.ndarray,
    ir: np.ndarray,
    rows: Sequence[str] = GALLERY_ROWS,
    severities: Sequence[float] = (0.3, 0.6, 0.9),
    seed: int = 0,
    tile_width: int = 240,
    progress: Callable[[Iterable[str]], Iterable[str]] = iter,
) -> np.ndarray:
    """A labelled RGB uint8 grid: one row per kind, columns clean + each severity, vis beside ir.

    The pair is resized to ``tile_width`` first, so the gallery shows what the degradations do at
    a typical training-crop scale. ``progress`` wraps the row iteration (e.g. a tqdm bar).
    """
    vis_f, ir_f = _to_unit_float(vis, "visible"), _to_unit_float(ir, "infrared")
    h = max(1, round(vis_f.shape[0] * tile_width / vis_f.shape[1]))
    vis_f = cv2.resize(vis_f, (tile_width, h), interpolation=cv2.INTER_AREA)
    ir_f = cv2.resize(ir_f, (tile_width, h), interpolation=cv2.INTER_AREA)
    scale = max(0.6, tile_width / 240)
    header_h, gap = int(28 * scale), 4
    cols = [None, *severities]
    width = len(cols) * (2 * tile_width + gap) + gap
    height = header_h + len(rows) * (h + gap) + gap
    canvas = np.full((height, width, 3), 40, np.uint8)
    for c, sev in enumerate(cols):
        x = gap + c * (2 * tile_width + gap)
        title = "clean (vis | ir)" if sev is None else f"severity {sev:g}"
        cv2.putText(canvas, title, (x + 4, header_h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, (255, 255, 255), 1, cv2.LINE_AA)
    for r, kind in enumerate(progress(rows)):
        y = header_h + r * (h + gap)
        for c, sev in enumerate(cols):
            x = gap + c * (2 * tile_width + gap)
            v, i = (vis_f, ir_f) if sev is None else degrade_pair(vis_f, ir_f, [(kind, sev)], seed)
            tile_v = np.round(v * 255).astype(np.uint8)
            tile_i = np.repeat(np.round(i * 255).astype(np.uint8)[..., None], 3, axis=2)
            if c == 0:
                _label(tile_v, kind, scale)
            canvas[y : y + h, x : x + tile_width] = tile_v
            canvas[y : y + h, x + tile_width : x + 2 * tile_width] = tile_i
    return canvas
