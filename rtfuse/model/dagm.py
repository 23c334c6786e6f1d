"""DAGM: degradation-aware guidance (paper eq. 6-7).

An image encoder maps the raw visible and infrared frames to 512-d features; their product goes
through a two-layer MLP to the degradation vector ``d_deg`` that drives every gate. A
classification head names the degradation (stage-1 training, and the label the runtime shows)
and a severity head estimates its strength.

Two encoder backends share one contract, ``encode((B,3,H,W) in [0,1]) -> (B,512)``:
``lite`` (small CNN, trained from scratch; the default) and ``clip`` (open_clip ViT + LoRA).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rtfuse.color import as_rgb, luminance
from rtfuse.errors import RtfuseError
from rtfuse.model.config import FusionConfig
from rtfuse.model.pkdm import laplacian

FEATURE_DIM = 512
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LORA_TARGETS = ["attn", "c_fc", "c_proj"]  # LoRA on attn.out_proj would never train: MHA reads it directly


class LoRAAttention(nn.Module):
    """LoRA on nn.MultiheadAttention's in- and out-projection without touching the base weights.

    MHA reads its projection weights directly, so adapters must change the weights it sees.
    peft 0.21 does this by merging into the frozen weights and unmerging around each forward,
    which lets the base weights drift once the adapters train; here the adapted weights are
    substituted for the call only (torch.func.functional_call).
    """

    def __init__(self, base: nn.MultiheadAttention, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.scaling = alpha / rank
        d = base.embed_dim
        self.in_A = nn.Parameter(torch.randn(rank, d) / rank**0.5)
        self.in_B = nn.Parameter(torch.zeros(3 * d, rank))
        self.out_A = nn.Parameter(torch.randn(rank, d) / rank**0.5)
        self.out_B = nn.Parameter(torch.zeros(d, rank))

    def forward(self, *args, **kwargs):
        adapted = {
            "in_proj_weight": self.base.in_proj_weight + self.scaling * self.in_B @ self.in_A,
            "out_proj.weight": self.base.out_proj.weight + self.scaling * self.out_B @ self.out_A,
        }
        return torch.func.functional_call(self.base, adapted, args, kwargs)


def add_lora(visual: nn.Module, rank: int) -> nn.Module:
    """LoRA adapters on LORA_TARGETS: peft for the Linear layers, LoRAAttention for `attn`."""
    from peft import LoraConfig, inject_adapter_in_model

    alpha = 2 * rank
    linear_targets = [t for t in LORA_TARGETS if t != "attn"]
    visual = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=linear_targets), visual)
    for parent in list(visual.modules()):
        attn = getattr(parent, "attn", None)
        if isinstance(attn, nn.MultiheadAttention):
            parent.attn = LoRAAttention(attn, rank, alpha)
    return visual


HISTOGRAM_BINS = 16


def detail_maps(x: torch.Tensor) -> torch.Tensor:
    """|Laplacian|, |d/dx| and |d/dy| of the luminance at the input's own resolution, (B,3,H,W).

    Noise and rain live in the finest scales and vanish when a frame is shrunk to the encoder's
    input size; their energy measured first and then averaged down survives. The two oriented
    maps tell streaks (rain: near-vertical, so mostly horizontal gradients) from isotropic noise.
    """
    y = luminance(x)
    lap = laplacian(y)[..., 1:-1, 1:-1]  # the interior: no padded neighbours
    dx = y[..., 1:-1, 2:] - y[..., 1:-1, :-2]
    dy = y[..., 2:, 1:-1] - y[..., :-2, 1:-1]
    return F.pad(torch.cat((lap.abs(), dx.abs(), dy.abs()), 1), (1, 1, 1, 1), mode="replicate")


def luma_histogram(x: torch.Tensor, bins: int = HISTOGRAM_BINS) -> torch.Tensor:
    """Soft (triangular-kernel) histogram of the luminance, (B, bins), summing to 1.

    Exposure problems are about where the mass sits: a clipped highlight bin (overexposure), a
    crowded dark end (low light), a histogram squeezed towards grey (haze).
    """
    y = luminance(x).flatten(1).clamp(0, 1)
    centres = torch.linspace(0, 1, bins, device=x.device, dtype=x.dtype)
    weights = (1 - (y[:, :, None] - centres).abs() * (bins - 1)).clamp(min=0)
    return weights.mean(1)


def global_statistics(x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and standard deviation, chroma spread and the luminance histogram."""
    chroma = x.max(1).values - x.min(1).values
    return torch.cat((x.mean((2, 3)), x.std((2, 3)), chroma.mean((1, 2))[:, None], chroma.std((1, 2))[:, None],
                      luma_histogram(x[:, :3])), 1)


class LiteEncoder(nn.Module):
    """Strided CNN over RGB + detail maps, with mean and standard-deviation pooling, joined by
    global statistics that a small CNN would otherwise have to learn to compute.

    GroupNorm, not BatchNorm: visible and infrared frames share the encoder, so batch statistics
    would mix the two modalities and differ between training and inference.
    """

    IN_CHANNELS = 6  # RGB + three detail maps

    def __init__(self, size: int = 128, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.size = size
        layers: list[nn.Module] = []
        prev = self.IN_CHANNELS
        for w in widths:
            layers += [nn.Conv2d(prev, w, 3, stride=2, padding=1), nn.GroupNorm(4, w), nn.ReLU(inplace=True)]
            prev = w
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * prev + 2 * self.IN_CHANNELS + 2 + HISTOGRAM_BINS, FEATURE_DIM)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(x, size=(self.size, self.size), mode="area")
        detail = F.interpolate(detail_maps(x) * 4.0, size=(self.size, self.size), mode="area")
        x = torch.cat((small, detail), 1)
        f = self.features(x)
        return self.proj(torch.cat((f.mean((2, 3)), f.std((2, 3)), global_statistics(x)), 1))


class ClipEncoder(nn.Module):
    """open_clip vision tower with LoRA adapters (peft); base weights stay frozen."""

    def __init__(self, cfg: FusionConfig, vision_overrides: dict | None = None):
        super().__init__()
        import open_clip  # noqa: F401  (registers model configs)
        from open_clip.factory import get_model_config
        from open_clip.model import CLIPVisionCfg, _build_vision_tower

        model_cfg = get_model_config(cfg.clip_model)
        if model_cfg is None:
            raise RtfuseError(f"unknown open_clip model {cfg.clip_model!r}")
        vision = dict(model_cfg["vision_cfg"], **(vision_overrides or {}))
        visual = _build_vision_tower(model_cfg["embed_dim"], CLIPVisionCfg(**vision))
        if cfg.clip_pretrained:
            _load_clip_weights(visual, cfg.clip_model, cfg.clip_pretrained)
        for p in visual.parameters():
            p.requires_grad_(False)
        self.visual = add_lora(visual, cfg.lora_rank)
        self.image_size = vision["image_size"]
        self.proj = nn.Identity() if model_cfg["embed_dim"] == FEATURE_DIM else nn.Linear(model_cfg["embed_dim"], FEATURE_DIM)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        return self.proj(self.visual((x.clamp(0, 1) - self.mean) / self.std))


def _load_clip_weights(visual: nn.Module, model_name: str, source: str) -> None:
    """Load pretrained vision weights from a local file, or an open_clip tag (downloads)."""
    path = Path(source)
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    else:
        import open_clip

        try:
            full = open_clip.create_model(model_name, pretrained=source)
        except Exception as exc:  # network or unknown tag: one clear line
            raise RtfuseError(f"cannot load CLIP weights {source!r}: not a file, and open_clip failed: {exc}") from exc
        state = {f"visual.{k}": v for k, v in full.visual.state_dict().items()}
    vis_state = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")} or state
    missing, _ = visual.load_state_dict(vis_state, strict=False)
    if missing:
        raise RtfuseError(f"{source}: CLIP weights miss {len(missing)} vision keys (e.g. {missing[0]})")


@dataclass
class Degradation:
    """DAGM output for a batch."""

    vector: torch.Tensor  # d_deg, (B, 512)
    logits: torch.Tensor  # class logits, (B, num_classes)
    severity: torch.Tensor  # (B,) in [0, 1]


class DAGM(nn.Module):
    def __init__(self, cfg: FusionConfig, clip_vision_overrides: dict | None = None):
        super().__init__()
        self.classes = cfg.classes
        self.encoder = LiteEncoder(cfg.encoder_size) if cfg.encoder == "lite" else ClipEncoder(cfg, clip_vision_overrides)
        self.mlp = nn.Sequential(nn.Linear(FEATURE_DIM, FEATURE_DIM), nn.GELU(), nn.Linear(FEATURE_DIM, cfg.deg_dim))
        self.classifier = nn.Linear(cfg.deg_dim, len(cfg.classes))
        self.severity = nn.Linear(cfg.deg_dim, 1)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> Degradation:
        """Raw (pre-PKDM) frames in: the vector must describe the input's degradation."""
        both = self.encoder.encode(torch.cat((as_rgb(vis), as_rgb(ir)), 0))
        f_vis, f_ir = both.chunk(2, 0)
        d = self.mlp(f_vis * f_ir)
        return Degradation(d, self.classifier(d), torch.sigmoid(self.severity(d)).squeeze(1))
