"""PKDM: physics-based pre-enhancement (paper eq. 1-5).

Each visible stage predicts its physical parameters at reduced resolution (cheap) and applies
them at full resolution. Stages blend with their input as ``in + w * (enh - in)`` with a
strength ``w`` that follows the clip's degradation vector (docs/deviations.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from rtfuse.color import luminance
from rtfuse.model.config import FusionConfig

STAGES = ("dehaze", "lowlight", "derain")
# The degradations each stage exists to undo (rtfuse.degrade kinds). A stage acts only where one of
# them is present: on a clean frame PKDM is the identity (do no harm).
STAGE_DEGRADATIONS: dict[str, tuple[str, ...]] = {
    "dehaze": ("haze",),
    "lowlight": ("low_light", "overexposure"),
    "derain": ("rain",),
}


def stage_gates(kinds: Iterable[str]) -> tuple[float, ...]:
    """1 for each stage that one of the degradation ``kinds`` present calls for, else 0."""
    present = set(kinds)
    return tuple(float(bool(present & set(STAGE_DEGRADATIONS[s]))) for s in STAGES)


def _param_net(in_ch: int, width: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, width, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, out_ch, 3, padding=1),
    )


def _downscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    h, w = max(1, x.shape[-2] // scale), max(1, x.shape[-1] // scale)
    return F.adaptive_avg_pool2d(x, (h, w))


def _bilinear_phases(factor: int, like: torch.Tensor) -> torch.Tensor:
    """(3, factor) weights: output ``factor*i + r`` = w[0,r] x[i-1] + w[1,r] x[i] + w[2,r] x[i+1].

    Computed in Python and made a tensor in one step: this runs for every frame on the eager path.
    """
    offsets = [(r + 0.5) / factor - 0.5 for r in range(factor)]
    before, after = [max(-o, 0.0) for o in offsets], [max(o, 0.0) for o in offsets]
    return like.new_tensor([before, [1 - b - a for b, a in zip(before, after)], after])


def _upsample_axis(x: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    pad = (0, 0, 1, 1) if dim == -2 else (1, 1, 0, 0)
    xp = F.pad(x, pad, mode="replicate")
    w = _bilinear_phases(factor, x)
    if dim == -2:  # phases on a new axis before the rows' contents: (..., n, factor, W)
        taps = [xp[..., k : k + n, None, :] * w[k].view(factor, 1) for k in range(3)]
        return (taps[0] + taps[1] + taps[2]).flatten(-3, -2)
    taps = [xp[..., k : k + n, None] * w[k] for k in range(3)]
    return (taps[0] + taps[1] + taps[2]).flatten(-2)


def upsample_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)``.

    For whole-number factors it is written as three shifted taps per axis, rows last: compilers
    turn that into contiguous, vectorised loops, where the generic gather-based resize they
    generate is several times slower at full resolution (docs/engines.md, "Written for the compiler").
    """
    (h, w), (sh, sw) = x.shape[-2:], size
    if sh % h or sw % w:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return _upsample_axis(_upsample_axis(x, sw // w, -1), sh // h, -2)


def dehaze(image: torch.Tensor, airlight: torch.Tensor, transmission: torch.Tensor, t0: float) -> torch.Tensor:
    """Invert the scattering model I = J t + A (1 - t) (eq. 1)."""
    return ((image - airlight) / transmission.clamp(min=t0) + airlight).clamp(0.0, 1.0)


def light_enhancement_curves(image: torch.Tensor, curve: torch.Tensor, iterations: int) -> torch.Tensor:
    """Zero-DCE curves: x <- x + r x (1 - x), r in (-1, 1); positive r brightens (eq. 2).

    ``curve`` is (B, 1, H, W): one map shared by the colour channels and, as in Zero-DCE++,
    by every iteration (one upsampled map instead of one per iteration).
    """
    # x + r x (1 - x) written as x (1 + r) - r x^2: each step reads x twice, not three times,
    # which keeps a compiler's inlined expression of the unrolled loop small (2^n, not 3^n).
    x, gain = image, 1 + curve
    for _ in range(iterations):
        x = x * gain - curve * torch.square(x)
    return x


def blend(before: torch.Tensor, after: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``before + w (after - before)``: w=0 keeps the input, w=1 takes the enhancement."""
    return torch.lerp(before, after, weight.view(-1, 1, 1, 1))


class Dehaze(nn.Module):
    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.scale, self.t0 = cfg.pkdm_scale, cfg.dehaze_t0
        self.net = _param_net(3, cfg.pkdm_width, 1 + 3)
        with torch.no_grad():  # start near t = 1: no dehazing until trained
            self.net[-1].bias.copy_(torch.tensor([3.0, 0.0, 0.0, 0.0]))

    def forward(self, vis: torch.Tensor) -> torch.Tensor:
        p = self.net(_downscale(vis, self.scale))
        transmission = upsample_bilinear(torch.sigmoid(p[:, :1]), vis.shape[-2:])
        airlight = torch.sigmoid(p[:, 1:].mean((2, 3), keepdim=True) + 2.0)
        return dehaze(vis, airlight, transmission, self.t0)


class LowLight(nn.Module):
    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.scale, self.iterations = cfg.pkdm_scale, cfg.lowlight_iterations
        self.net = _param_net(3, cfg.pkdm_width, 1)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, vis: torch.Tensor) -> torch.Tensor:
        curve = upsample_bilinear(torch.tanh(self.net(_downscale(vis, self.scale))), vis.shape[-2:])
        return light_enhancement_curves(vis, curve, self.iterations).clamp(0.0, 1.0)


class Derain(nn.Module):
    """Predicts a gray rain layer (streaks are thin and nearly achromatic) from the luminance and
    removes it from every colour channel. The CNN runs on 4x4 blocks rearranged into channels
    (PixelUnshuffle): full-resolution output at a sixteenth of the positions."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.block = 4
        width = self.block * self.block
        self.net = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, vis: torch.Tensor) -> torch.Tensor:
        y = luminance(vis)
        h, w = y.shape[-2:]
        ph, pw = (-h) % self.block, (-w) % self.block
        y = F.pad(y, (0, pw, 0, ph), mode="replicate") if ph or pw else y
        layer = self.net(F.pixel_unshuffle(y, self.block))
        rain = F.pixel_shuffle(layer, self.block)[..., :h, :w]
        return (vis - rain).clamp(0.0, 1.0)


def laplacian(image: torch.Tensor) -> torch.Tensor:
    """4-neighbour Laplacian (4 x centre - neighbours) with replicated borders.

    Written as shifted slices rather than a convolution so compilers fuse it with its neighbours.
    """
    p = F.pad(image, (1, 1, 1, 1), mode="replicate")
    centre = p[..., 1:-1, 1:-1]
    return 4 * centre - p[..., :-2, 1:-1] - p[..., 2:, 1:-1] - p[..., 1:-1, :-2] - p[..., 1:-1, 2:]


class IRSharpen(nn.Module):
    """``I + lambda * Laplacian(I)`` with a learnable lambda (eq. 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.tensor(0.1))

    def forward(self, ir: torch.Tensor) -> torch.Tensor:
        return (ir + self.strength * laplacian(ir)).clamp(0.0, 1.0)


class PKDM(nn.Module):
    """Sequential visible enhancement (dehaze -> low light -> derain) and IR sharpening."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.dehaze, self.lowlight, self.derain = Dehaze(cfg), LowLight(cfg), Derain(cfg)
        self.ir_sharpen = IRSharpen()
        # Blend strength w = sigmoid(bias + d_deg . u): a learned scalar plus a severity term.
        self.blend_bias = nn.Parameter(torch.zeros(len(STAGES)))
        self.blend_from_deg = nn.Linear(cfg.deg_dim, len(STAGES), bias=False)
        nn.init.zeros_(self.blend_from_deg.weight)

    def blend_weights(self, d_deg: torch.Tensor) -> torch.Tensor:
        """(B, deg_dim) -> (B, 3) stage strengths in (0, 1)."""
        return torch.sigmoid(self.blend_bias + self.blend_from_deg(d_deg))

    def forward(
        self, vis: torch.Tensor, ir: torch.Tensor, weights: torch.Tensor, active: tuple[bool, ...] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``active`` (known from a plan) skips the stages whose strength is 0: their blend returns the
        input exactly, and on a clean scene the three cost half the eager model's time (31 of 65 ms
        at 640x480, one thread). Without it (training, a traced engine) every stage runs."""
        x = vis
        for i, stage in enumerate((self.dehaze, self.lowlight, self.derain)):
            if active is None or active[i]:
                x = blend(x, stage(x), weights[:, i])
        return x, self.ir_sharpen(ir)
