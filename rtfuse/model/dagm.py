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

from rtfuse.errors import RtfuseError
from rtfuse.model.config import FusionConfig

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


def high_frequency_energy(x: torch.Tensor) -> torch.Tensor:
    """|Laplacian| of the luminance at the input's own resolution, (B,1,H,W).

    Noise and rain live in the finest scales and vanish when a frame is shrunk to the encoder's
    input size; their energy measured first and then averaged down survives.
    """
    y = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    lap = y[..., 1:-1, 1:-1] * 4 - y[..., :-2, 1:-1] - y[..., 2:, 1:-1] - y[..., 1:-1, :-2] - y[..., 1:-1, 2:]
    return F.pad(lap.abs(), (1, 1, 1, 1), mode="replicate")


class LiteEncoder(nn.Module):
    """Strided CNN over RGB + high-frequency energy, with mean and standard-deviation pooling.

    GroupNorm, not BatchNorm: visible and infrared frames share the encoder, so batch statistics
    would mix the two modalities and differ between training and inference.
    """

    def __init__(self, size: int = 128, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.size = size
        layers: list[nn.Module] = []
        prev = 4
        for w in widths:
            layers += [nn.Conv2d(prev, w, 3, stride=2, padding=1), nn.GroupNorm(4, w), nn.ReLU(inplace=True)]
            prev = w
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * prev + 8, FEATURE_DIM)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        hf = F.interpolate(high_frequency_energy(x) * 4.0, size=(self.size, self.size), mode="area")
        x = torch.cat((F.interpolate(x, size=(self.size, self.size), mode="area"), hf), 1)
        f = self.features(x)
        stats = torch.cat((x.mean((2, 3)), x.std((2, 3))), 1)  # global exposure, contrast and detail cues
        return self.proj(torch.cat((f.mean((2, 3)), f.std((2, 3)), stats), 1))


class ClipEncoder(nn.Module):
    """open_clip vision tower with LoRA adapters (peft); base weights stay frozen."""

    def __init__(self, cfg: FusionConfig, vision_overrides: dict | None = None):
        super().__init__()
        import open_clip  # noqa: F401  (registers model configs)
        from open_clip.model import CLIPVisionCfg, _build_vision_tower
        from open_clip.factory import get_model_config

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
        vis3 = vis if vis.shape[1] == 3 else vis.expand(-1, 3, -1, -1)
        both = self.encoder.encode(torch.cat((vis3, ir.expand(-1, 3, -1, -1)), 0))
        f_vis, f_ir = both.chunk(2, 0)
        d = self.mlp(f_vis * f_ir)
        return Degradation(d, self.classifier(d), torch.sigmoid(self.severity(d)).squeeze(1))
