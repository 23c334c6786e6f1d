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
FUSION_BASES: tuple[str, ...] = ("max", "pyramid", "laplacian", "select", "select-relative", "select-dim", "select-night", "blend")


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
    # Derain predicts streaks only: its layer has zero mean over every 4x4 block, so it cannot
    # shift brightness (README, "What PKDM does to the visible input"; config rt-derain-hp).
    derain_highpass: bool = False
    # What the fusion head's residual is added to: the per-pixel maximum of the enhanced sources
    # ("max", the paper's intensity target), or their Laplacian-pyramid fusion ("laplacian": the
    # stronger detail at full resolution, which the head, working at H/stem, cannot add by itself),
    # or "select": a soft per-pixel choice between the two, sigmoid(SELECT_SHARPNESS (vis - ir) +
    # a learned logit), which starts as a soft maximum and can learn to take the darker source
    # (a dark infrared pixel under a saturated visible one); "select-relative" starts the same
    # choice from the sources' difference relative to their sum, so that a dark scene (night,
    # a thermal camera at low gain) gets as decisive a start as a bright one instead of an average;
    # "select-dim" divides by that sum only where it is below 1 (dark pixels), "select" elsewhere;
    # "select-night" is "select" down to a sum of SELECT_NIGHT_SUM, sharper in proportion below it;
    # "blend" mixes "max" and "laplacian" per pixel by a learned weight (starting half and half):
    # the maximum keeps the infrared of a dark scene, the pyramid the detail through haze and glare.
    # Checkpoints written before this option existed are "max".
    base: str = "max"
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
        if self.base not in FUSION_BASES:
            raise RtfuseError(f"unknown fusion base {self.base!r} ({', '.join(FUSION_BASES)})")
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
    # Stage-2 experiments, none shipped (docs/training-experiments.md):
    # PKDM closer to the clean image, lower fusion scores.
    "rt-derain-hp": FusionConfig(name="rt-derain-hp", derain_highpass=True),
    # The head corrects a Laplacian-pyramid fusion; clean VIF fell.
    "rt-lap": FusionConfig(name="rt-lap", base="laplacian"),
    # The head also predicts where to prefer the darker source.
    "rt-sel": FusionConfig(name="rt-sel", base="select"),
    # The same, its start scaled to the scene's brightness everywhere, below a sum of 1, below 0.5.
    "rt-selrel": FusionConfig(name="rt-selrel", base="select-relative"),
    "rt-seldim": FusionConfig(name="rt-seldim", base="select-dim"),
    "rt-selnight": FusionConfig(name="rt-selnight", base="select-night"),
    # The head chooses per pixel between the maximum and the Laplacian-pyramid fusion; it took the
    # pyramid almost everywhere and clean VIF fell.
    "rt-blend": FusionConfig(name="rt-blend", base="blend"),
}


def get_config(name: str, **overrides: Any) -> FusionConfig:
    try:
        cfg = MODEL_CONFIGS[name]
    except KeyError:
        raise RtfuseError(f"unknown model {name!r}; available: {', '.join(MODEL_CONFIGS)}") from None
    return replace(cfg, **overrides) if overrides else cfg
