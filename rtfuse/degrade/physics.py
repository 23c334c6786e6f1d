"""The degradations that run as batched torch kernels: haze, low light, overexposure, noise.

Each kernel models the physics that causes its degradation (atmospheric scattering, photon shot
noise, lens bloom, microbolometer fixed-pattern noise) on batched torch tensors (B,3,H,W)/(B,1,H,W)
with per-sample severities, drawing its randomness from a ``torch.Generator``. Here too are the
helpers they share: display <-> linear light, seeded draws, a cheap wide blur (:func:`smooth`) and
the haze depth proxy.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from rtfuse.color import LUMA_WEIGHTS, luminance

Tensor = torch.Tensor
Kernel = Callable[[Tensor, Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]


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

