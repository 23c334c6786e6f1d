"""Stage 2: train the fusion network (PKDM + DGME U-Net) with DAGM frozen from stage 1.

Inputs are crops of real registered pairs with one synthetic degradation each (or none), so the
clean sources are known and serve as references for every loss term (DESIGN section 3).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rtfuse.checkpoint import read_dagm, save_checkpoint
from rtfuse.color import luminance
from rtfuse.errors import RtfuseError
from rtfuse.model import TASK_FUSION, TASK_RECON, FusionNet, get_config
from rtfuse.model.bases import get_base
from rtfuse_train import experiments  # noqa: F401  (registers the experiments: training can run them)
from rtfuse_train.data import DegradedPairs, SceneMix, SourcePair, load_sources, split_sources
from rtfuse_train.losses import (
    LossWeights,
    edge_preservation_loss,
    expert_task_mutual_information,
    gradient_loss,
    intensity_loss,
    load_balancing_loss,
    structure_loss,
    target_losses,
)
from rtfuse_train.trainer import TrainConfig, Trainer, TrainResult, seed_everything

log = logging.getLogger(__name__)

TERMS = ("pix", "grad", "recon", "pkdm", "load", "mi", "ssim", "qabf")


class FrozenDAGM(nn.Module):
    """The fusion network in training, with DAGM kept in eval mode (its BatchNorm statistics fixed)."""

    def __init__(self, model: FusionNet):
        super().__init__()
        self.model = model
        for p in model.dagm.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "FrozenDAGM":
        super().train(mode)
        self.model.dagm.eval()
        return self

    def forward(self, vis: torch.Tensor, ir: torch.Tensor, stage_gates: torch.Tensor | None = None):
        with torch.no_grad():
            d_deg = self.model.dagm(vis, ir).vector
        return self.model(vis, ir, d_deg=d_deg, reconstruct=True, stage_gates=stage_gates)


TARGETS = ("max", "base")  # what L_pix and L_grad pull the fused luminance towards


def loss_terms(model: FusionNet, out, batch: dict, target: str = "max") -> dict[str, torch.Tensor]:
    """Every term of the composite loss, separately (so each is logged).

    ``target`` "max": the paper's per-pixel maxima of the clean sources' intensity and gradient;
    "base": the model's fusion base applied to the clean sources (``losses.target_losses``).
    """
    clean_vis, clean_ir = batch["clean_vis"], batch["clean_ir"]
    vis_y = luminance(clean_vis)
    if target == "base":
        with torch.no_grad():
            fused_clean = get_base(model.cfg.base).start(vis_y, clean_ir).clamp(0.0, 1.0)  # what an output can be
        pix, grad = target_losses(out.fused_y, fused_clean)
    else:
        pix, grad = intensity_loss(out.fused_y, vis_y, clean_ir), gradient_loss(out.fused_y, vis_y, clean_ir)
    n = len(model.cfg.channels)
    fusion_gates = out.gates[TASK_FUSION]
    recon_gates = out.gates[TASK_RECON]
    decoder = slice(2 * n, None)
    return {
        "pix": pix,
        "grad": grad,
        "recon": F.l1_loss(out.recon_vis, clean_vis) + F.l1_loss(out.recon_ir, clean_ir),
        "pkdm": F.l1_loss(out.vis_enhanced, clean_vis) if model.cfg.pkdm else out.fused.new_zeros(()),
        "load": load_balancing_loss(fusion_gates + recon_gates[decoder]),
        "mi": -expert_task_mutual_information([fusion_gates, recon_gates], decoder),
        "ssim": structure_loss(out.fused_y, vis_y, clean_ir),
        "qabf": edge_preservation_loss(out.fused_y, vis_y, clean_ir),
    }


def combine(terms: dict[str, torch.Tensor], w: LossWeights) -> torch.Tensor:
    return (w.pix * terms["pix"] + w.grad * terms["grad"] + w.recon * terms["recon"] + w.pkdm * terms["pkdm"]
            + w.aux * (terms["load"] + terms["mi"]) + w.ssim * terms["ssim"] + w.qabf * terms["qabf"])


@dataclass
class Stage2:
    """The stage-2 parts of training (see rtfuse_train.trainer.Stage)."""

    out: Path
    weights: LossWeights = field(default_factory=LossWeights)
    metadata: dict[str, Any] = field(default_factory=dict)
    target: str = "max"  # TARGETS
    find_unused_parameters: bool = True  # sparse routing: experts unused by a batch get no gradient

    def module(self, model: FusionNet) -> nn.Module:
        return FrozenDAGM(model)

    def parameters(self, model: FusionNet) -> list[nn.Parameter]:
        frozen = {id(p) for p in model.dagm.parameters()}
        return [p for p in model.parameters() if id(p) not in frozen]

    def loss(self, net: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        model = net.module.model if hasattr(net, "module") else net.model
        out = net(batch["vis"], batch["ir"], batch["stage_gates"])
        terms = loss_terms(model, out, batch, self.target)
        return combine(terms, self.weights), {k: float(v.detach()) for k, v in terms.items()}

    def evaluate(self, net: nn.Module, batches: Iterable[dict]) -> dict[str, Any]:
        """Held-out loss terms with gate noise off (what inference sees)."""
        model = net.model
        sums: dict[str, float] = dict.fromkeys(TERMS, 0.0)
        count = 0
        for batch in batches:
            d_deg = model.dagm(batch["vis"], batch["ir"]).vector
            out = model(batch["vis"], batch["ir"], d_deg=d_deg, reconstruct=True, noisy=False,
                        stage_gates=batch["stage_gates"])
            for k, v in loss_terms(model, out, batch, self.target).items():
                sums[k] += float(v) * len(batch["vis"])
            count += len(batch["vis"])
        result = {f"test_{k}": v / max(1, count) for k, v in sums.items()}
        result["test_loss"] = float(combine({k: torch.tensor(result[f"test_{k}"]) for k in TERMS}, self.weights))
        return result

    def export(self, model: FusionNet, metrics: dict[str, Any]) -> Path:
        return save_checkpoint(self.out, model, {"stage": 2, "trained": True, **self.metadata, **metrics})


@dataclass
class Stage2Options:
    out: Path
    dagm: Path  # stage-1 checkpoint: its DAGM is loaded and frozen
    model: str = "rt"  # rt, or an ablation: rt-nopkdm, rt-dense
    base: str | None = None  # the model's fusion base instead of its own (an ablation of an experiment's base)
    pairs: list[Path] = field(default_factory=list)
    videos: list[tuple[Path, Path]] = field(default_factory=list)
    every: int = 10
    cache_side: int | None = None  # native resolution: detail statistics must match inference
    size: int = 128
    samples_per_epoch: int = 2048
    eval_repeats: int = 1
    test_fraction: float = 0.2
    severity_range: tuple[float, float] = (0.2, 1.0)
    scenes: SceneMix = SceneMix()  # composite, night and monochrome scenes, dark thermal cameras
    weights: LossWeights = field(default_factory=LossWeights)
    target: str = "max"  # TARGETS: the paper's maxima, or the clean sources' fusion by the model's base
    train: TrainConfig | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise RtfuseError(f"target must be one of {TARGETS}, got {self.target!r}")


def build_model(opts: Stage2Options) -> FusionNet:
    """A fresh fusion network of ``opts.model`` carrying the stage-1 DAGM."""
    stage1_cfg, dagm_state = read_dagm(opts.dagm)
    dagm_keys = ("deg_dim", "encoder", "encoder_size", "clip_model", "lora_rank", "classes")
    cfg = replace(get_config(opts.model), **{k: getattr(stage1_cfg, k) for k in dagm_keys})
    if opts.base is not None:
        cfg = replace(cfg, base=opts.base)
    model = FusionNet(cfg)
    try:
        model.dagm.load_state_dict(dagm_state)
    except RuntimeError as exc:
        raise RtfuseError(f"{opts.dagm}: its DAGM does not fit model {opts.model!r}: {exc}") from None
    return model


def build_datasets(opts: Stage2Options, sources: Sequence[SourcePair], seed: int) -> tuple[DegradedPairs, DegradedPairs, dict]:
    train, test = split_sources(sources, opts.test_fraction)
    train_ds = DegradedPairs(train, opts.size, opts.samples_per_epoch, seed, opts.severity_range, native=True,
                             scenes=opts.scenes)
    test_ds = DegradedPairs(test, opts.size, len(test) * 6 * opts.eval_repeats, seed + 1, opts.severity_range,
                            balanced=True, native=True)
    summary = {"train_sources": len(train), "test_sources": len(test),
               "test_names": sorted({s.group for s in test}),
               "data": [str(p) for p in opts.pairs] + [f"{v}|{i}" for v, i in opts.videos]}
    return train_ds, test_ds, summary


def run_stage2(opts: Stage2Options, resume: bool = False, sources: Sequence[SourcePair] | None = None) -> TrainResult:
    cfg = opts.train or TrainConfig(run_dir=str(opts.out.with_name(opts.out.stem + "_run")))
    seed_everything(cfg.seed)
    model = build_model(opts)
    sources = sources if sources is not None else load_sources(opts.pairs, opts.videos, opts.every, opts.cache_side)
    train_ds, test_ds, summary = build_datasets(opts, sources, cfg.seed)
    summary.update(model=opts.model, dagm=str(opts.dagm), loss_weights=asdict(opts.weights), target=opts.target,
                   **asdict(opts.scenes))
    log.info("stage 2 (%s): %d train / %d test sources", opts.model, summary["train_sources"], summary["test_sources"])
    trainer = Trainer(model, Stage2(opts.out, opts.weights, summary, opts.target), train_ds, test_ds, cfg)
    try:
        return trainer.fit(resume)
    finally:
        trainer.close()
