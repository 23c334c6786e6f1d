"""Model configurations: frozen dataclasses in a registry (`rt` for CPU real time, `base` for GPUs)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from rtfuse.errors import RtfuseError

# Expert receptive fields (kernel height, kernel width, dilation): the paper's three kinds,
# "same height" (1xk), "same width" (kx1) and square kxk of several sizes/dilations.
# Every kernel fits in 5x5 so that any pair of experts folds into one static 5x5 block.
EXPERT_KERNELS: tuple[tuple[int, int, int], ...] = (
    (1, 3, 1),
    (1, 5, 1),
    (3, 1, 1),
    (5, 1, 1),
    (1, 1, 1),
    (3, 3, 1),
    (5, 5, 1),
    (3, 3, 2),
)

DEGRADATION_CLASSES: tuple[str, ...] = ("clean", "haze", "low_light", "overexposure", "rain", "noise")
# The fusion bases the product ships (rtfuse.model.bases): "pyramid", the Laplacian-pyramid fusion
# of the enhanced sources that takes each band's detail from the source with the stronger local
# detail and the brighter low-pass (structure from whichever source has it); or "max", their
# per-pixel maximum (the paper's intensity target; the base of every checkpoint written before
# 2026-12-06). Experiments register more from rtfuse_train.experiments.
FUSION_BASES: tuple[str, ...] = ("pyramid", "max")
# Options that left the product on 2026-12-06 (experiments/log.md), and the model variant each one
# became (rtfuse.model.variants, registered by rtfuse_train.experiments): the one migration step of
# an older checkpoint drops the option at its neutral value and lists the variant otherwise.
MIGRATED_OPTIONS: dict[str, tuple[Any, str]] = {"derain_highpass": (False, "derain-highpass")}


@dataclass(frozen=True)
class FusionConfig:
    """Everything needed to rebuild a model; stored inside every checkpoint."""

    name: str = "rt"
    channels: tuple[int, ...] = (8, 16, 32, 64)  # per branch, one entry per U-Net level
    stem: int = 4  # the first level runs at H/stem (PixelUnshuffle: lossless space-to-depth)
    expert_expansion: float = 1.0  # expert hidden width = channels * expansion
    num_experts: int = 8
    top_k: int = 2
    expert_kernels: tuple[tuple[int, int, int], ...] = EXPERT_KERNELS
    deg_dim: int = 512  # d_deg, the degradation vector
    task_dim: int = 16  # task embedding for decoder gates (fusion / reconstruction)
    pkdm: bool = True  # physics-based pre-enhancement on (off: the ablation "without PKDM")
    pkdm_scale: int = 8  # PKDM parameter nets run at 1/pkdm_scale resolution
    pkdm_width: int = 16
    base: str = "max"  # a registered fusion base (rtfuse.model.bases); checkpoints written before this option existed are "max"
    lowlight_iterations: int = 8  # iterations of the one shared light-enhancement curve
    dehaze_t0: float = 0.1
    encoder: str = "lite"  # DAGM backend: "lite" or "clip"
    encoder_size: int = 128  # lite encoder input side
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = None  # local file or open_clip tag (tags download)
    lora_rank: int = 8
    classes: tuple[str, ...] = DEGRADATION_CLASSES
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.expert_kernels) != self.num_experts:
            raise RtfuseError(f"{len(self.expert_kernels)} expert kernels for {self.num_experts} experts")
        if not 1 <= self.top_k <= self.num_experts:
            raise RtfuseError(f"top_k={self.top_k} must be in 1..{self.num_experts}")
        if self.encoder not in ("lite", "clip"):
            raise RtfuseError(f"unknown DAGM encoder {self.encoder!r} (lite, clip)")

    @property
    def multiple(self) -> int:
        """Input sides are padded to this: the stem plus one 2x step per further level."""
        return self.stem * 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FusionConfig":
        data = dict(data)
        for option, (neutral, variant) in MIGRATED_OPTIONS.items():
            if option in data and data.pop(option) != neutral:
                extra = dict(data.get("extra") or {})
                extra["variants"] = [*extra.get("variants", ()), variant]
                data["extra"] = extra
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RtfuseError(f"unknown model config keys {unknown}")
        tupled = {
            k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v)
            for k, v in data.items()
        }
        return cls(**tupled)


MODEL_CONFIGS: dict[str, FusionConfig] = {
    "rt": FusionConfig(name="rt", base="pyramid"),
    "base": FusionConfig(name="base", channels=(16, 32, 64, 128), expert_expansion=2.0, pkdm_scale=4, pkdm_width=32,
                         base="pyramid"),
    # Ablations of the paper's Table 5 (same training budget as rt).
    "rt-nopkdm": FusionConfig(name="rt-nopkdm", pkdm=False, base="pyramid"),
    "rt-dense": FusionConfig(name="rt-dense", num_experts=1, top_k=1, expert_kernels=((3, 3, 1),), expert_expansion=2.0,
                             base="pyramid"),
}


def register_model(cfg: FusionConfig) -> FusionConfig:
    """Register a configuration under its name (experiments do, from rtfuse_train.experiments)."""
    if cfg.name in MODEL_CONFIGS:
        raise ValueError(f"model {cfg.name!r} is registered already")
    MODEL_CONFIGS[cfg.name] = cfg
    return cfg


def get_config(name: str, **overrides: Any) -> FusionConfig:
    try:
        cfg = MODEL_CONFIGS[name]
    except KeyError:
        raise RtfuseError(f"unknown model {name!r}; available: {', '.join(MODEL_CONFIGS)}") from None
    return replace(cfg, **overrides) if overrides else cfg
