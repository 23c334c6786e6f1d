"""The rtfuse fusion model (one definition, shared by runtime and training)."""

from __future__ import annotations

import torch

from rtfuse.model.bases import FusionBase, get_base, register_base
from rtfuse.model.config import DEGRADATION_CLASSES, EXPERT_KERNELS, MODEL_CONFIGS, FusionConfig, get_config, register_model
from rtfuse.model.dagm import DAGM, Degradation
from rtfuse.model.dgme import DGME, Expert, GateOutput, NoisyTopKGate, dispatch
from rtfuse.model.fusionnet import TASK_FUSION, TASK_RECON, FusionNet, FusionOutput, LayerPlan, Plan
from rtfuse.model.variants import register_variant

__all__ = [
    "DAGM", "DEGRADATION_CLASSES", "DGME", "Degradation", "EXPERT_KERNELS", "Expert", "FusionBase", "FusionConfig",
    "FusionNet", "FusionOutput", "GateOutput", "LayerPlan", "MODEL_CONFIGS", "NoisyTopKGate", "Plan",
    "TASK_FUSION", "TASK_RECON", "create_model", "dispatch", "fusion_macs", "get_base", "get_config", "register_base",
    "register_model", "register_variant",
]


def create_model(config: str | FusionConfig = "rt", **overrides) -> FusionNet:
    """Build a model from a registered config name (``rt``, ``base``) or a config object."""
    cfg = get_config(config, **overrides) if isinstance(config, str) else config
    return FusionNet(cfg)


@torch.no_grad()
def fusion_macs(model: FusionNet, height: int, width: int) -> dict[str, float]:
    """Multiply-accumulates of one frame, counted by torch.utils.flop_counter (FLOPs / 2).

    ``fusion`` is the per-frame path (PKDM + U-Net with a plan: two experts per layer);
    ``dagm`` is the once-per-clip degradation vector.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    vis, ir = torch.rand(1, 3, height, width), torch.rand(1, 1, height, width)
    with FlopCounterMode(display=False) as dagm_counter:
        deg = model.dagm(vis, ir)
    plan = model.plan(deg.vector, deg)
    with FlopCounterMode(display=False) as fusion_counter:
        model(vis, ir, plan=plan)
    model.train(was_training)
    return {"fusion": fusion_counter.get_total_flops() / 2, "dagm": dagm_counter.get_total_flops() / 2}
