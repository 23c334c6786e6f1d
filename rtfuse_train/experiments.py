"""Stage-2 experiments that did not ship, registered into the product's registries (timm style).

Importing this module registers their fusion bases and model configurations, so that their
checkpoints load and train (``--model rt-sel``) without their code living in ``rtfuse``. Each one's
rule, run and verdict are in experiments/log.md.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from torch import nn

from rtfuse.model.bases import register_base
from rtfuse.model.config import FusionConfig, register_model
from rtfuse.model.pyramid import laplacian_fusion
from rtfuse.model.variants import register_variant

# How sharply the "select" bases' starting choice follows the brighter source: at 0.05 apart in
# luminance the brighter one gets sigmoid(2) = 88% of the weight. The relative bases divide the
# difference by the sources' sum (about the same where it is 1, and the same choice at any
# brightness); SELECT_FLOOR keeps the noise of black pixels from deciding it.
SELECT_SHARPNESS = 40.0
SELECT_FLOOR = 0.05
# Below this sum of the two luminances "select-night" sharpens the start in proportion to the
# darkness: 0.4% of the pixels of clean RoadScene training pairs lie below it, nearly all of the
# same pairs rendered as night scenes beside a low-gain thermal camera.
SELECT_NIGHT_SUM = 0.5

# What each select base divides the sources' difference by, given their sum plus SELECT_FLOOR
# (None: the difference as it is).
_SELECT_DIVISORS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "select": None,
    "select-relative": lambda total: total,
    "select-dim": lambda total: total.clamp(max=1.0),
    "select-night": lambda total: (total / SELECT_NIGHT_SUM).clamp(max=1.0),
}


def _select(divisor: Callable[[torch.Tensor], torch.Tensor] | None):
    """A base whose head also predicts a per-pixel logit: where to prefer the darker source."""

    def apply(vis_y: torch.Tensor, ir: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        gap = vis_y - ir
        start = gap if divisor is None else gap / divisor(vis_y + ir + SELECT_FLOOR)
        weight = torch.sigmoid(SELECT_SHARPNESS * start + head[:, 1:2])
        return ir + weight * gap + head[:, :1]

    return apply


for _name, _divisor in _SELECT_DIVISORS.items():
    register_base(_name, head_channels=2)(_select(_divisor))


@register_base("laplacian")
def _laplacian(vis_y: torch.Tensor, ir: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """The head corrects the classical Laplacian-pyramid fusion; clean VIF fell."""
    return laplacian_fusion(vis_y, ir) + head


@register_base("blend", head_channels=2)
def _blend(vis_y: torch.Tensor, ir: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """The head chooses per pixel between the maximum and the pyramid; it took the pyramid almost
    everywhere and clean VIF fell."""
    pyramid = laplacian_fusion(vis_y, ir)
    weight = torch.sigmoid(head[:, 1:2])
    return pyramid + weight * (torch.maximum(vis_y, ir) - pyramid) + head[:, :1]


@register_variant("derain-highpass")
def _derain_highpass(model: nn.Module) -> None:
    """Streaks are thin (eq. 4): the predicted rain layer keeps no block-wide offset, only structure
    inside each 4x4 block. PKDM came closer to the clean image; the fusion scored lower."""
    if model.cfg.pkdm:
        model.pkdm.derain.net.register_forward_hook(lambda module, inputs, layer: layer - layer.mean(1, keepdim=True))


register_model(FusionConfig(name="rt-derain-hp", base="max", extra={"variants": ["derain-highpass"]}))

_MODELS = (("rt-lap", "laplacian"), ("rt-sel", "select"), ("rt-selrel", "select-relative"),
           ("rt-seldim", "select-dim"), ("rt-selnight", "select-night"), ("rt-blend", "blend"))
for _name, _base in _MODELS:
    register_model(FusionConfig(name=_name, base=_base))


def registered_models() -> tuple[str, ...]:
    """The model names this module registered (train them with ``stage2 --model NAME``)."""
    return ("rt-derain-hp", *(name for name, _ in _MODELS))
