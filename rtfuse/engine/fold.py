"""Gate folding: a plan turns the sparse MoE U-Net into one static network.

With the plan fixed, a DGME layer computes ``x + sum_j w_j P_j(relu(S_j(relu(E_j x))))`` over its
k chosen experts. Because each expert is pointwise -> depthwise -> pointwise, the k experts are
one wider expert: the expand convolutions stack along output channels, the depthwise kernels
(all inside a 5x5 window, dilation included) are zero-padded to that window and stack too, and
the project convolutions concatenate along input channels with the gate weights multiplied in.
Every plan therefore has the same graph and the same tensor shapes; a plan change rewrites
weights in place (``refold``), which compiled backends see as a constant update, not a new graph.

The PKDM enhancement stages are the exception: a stage of zero plan strength returns its input, so a
folded network may leave stages out of its graph (``stages``). On a clean scene, whose plan gates all
three off, that is a quarter of the compiled engine's time; such a network serves only plans that
need no stage it lacks, and says so when asked for one.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from rtfuse.color import luminance, replace_luminance
from rtfuse.errors import ParameterError, RtfuseError
from rtfuse.model import DGME, FusionNet, LayerPlan, Plan
from rtfuse.model.fusionnet import _pad_to_multiple, decode, encode, fused_luminance
from rtfuse.model.pkdm import STAGES

ALL_STAGES = (True,) * len(STAGES)


def parse_stages(spec: str) -> tuple[bool, ...]:
    """``all``, ``none`` or a comma list of PKDM stage names -> the per-stage mask a network computes."""
    spec = spec.strip().lower()
    if spec in ("all", "none"):
        return ALL_STAGES if spec == "all" else (False,) * len(STAGES)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in STAGES]
    if unknown or not names:
        raise ParameterError(f"`stages` takes all, none or a comma list of {', '.join(STAGES)}; got {spec!r}")
    return tuple(s in names for s in STAGES)


def stages_spec(stages: tuple[bool, ...]) -> str:
    """The inverse of ``parse_stages``: ``all``, ``none`` or the names joined by commas."""
    if all(stages):
        return "all"
    return ",".join(s for s, on in zip(STAGES, stages) if on) or "none"


def kernel_span(kernels: tuple[tuple[int, int, int], ...]) -> int:
    """Side of the square window that holds every expert's (dilated) kernel."""
    span = max(dil * (max(kh, kw) - 1) + 1 for kh, kw, dil in kernels)
    if span % 2 == 0:
        raise RtfuseError(f"expert kernels need an odd common window, got {span}")
    return span


def embed_kernel(weight: torch.Tensor, dilation: int, span: int) -> torch.Tensor:
    """(C,1,kh,kw) depthwise kernel with dilation -> the equivalent dense (C,1,span,span) kernel."""
    c, _, kh, kw = weight.shape
    out = weight.new_zeros(c, 1, span, span)
    mid = span // 2
    rh, rw = dilation * (kh // 2), dilation * (kw // 2)
    out[:, :, mid - rh : mid + rh + 1 : dilation, mid - rw : mid + rw + 1 : dilation] = weight
    return out


class FoldedDGME(nn.Module):
    """``x + project(relu(spatial(relu(expand(x)))))``: k experts of one layer as one block."""

    def __init__(self, channels: int, hidden: int, slots: int, span: int):
        super().__init__()
        width = slots * hidden
        self.hidden, self.slots = hidden, slots
        self.expand = nn.Conv2d(channels, width, 1)
        self.spatial = nn.Conv2d(width, width, span, padding=span // 2, groups=width)
        self.project = nn.Conv2d(width, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(F.relu(self.spatial(F.relu(self.expand(x)))))


@torch.no_grad()
def folded_weights(layer: DGME, plan: LayerPlan, slots: int, span: int) -> dict[str, torch.Tensor]:
    """The FoldedDGME state of one layer under ``plan``; unused slots get all-zero weights."""
    if len(plan.experts) > slots:
        raise RtfuseError(f"plan uses {len(plan.experts)} experts in a layer folded for {slots}")
    expand_w, expand_b, spatial_w, spatial_b, project_w = [], [], [], [], []
    project_b = torch.zeros_like(layer.experts[0].project.bias)
    for e, g in zip(plan.experts, plan.weights):
        expert = layer.experts[e]
        expand_w.append(expert.expand.weight)
        expand_b.append(expert.expand.bias)
        spatial_w.append(embed_kernel(expert.spatial.weight, expert.kernel[2], span))
        spatial_b.append(expert.spatial.bias)
        project_w.append(g * expert.project.weight)
        project_b += g * expert.project.bias
    for _ in range(slots - len(plan.experts)):
        ref = layer.experts[0]
        expand_w.append(torch.zeros_like(ref.expand.weight))
        expand_b.append(torch.zeros_like(ref.expand.bias))
        spatial_w.append(ref.spatial.weight.new_zeros(ref.spatial.weight.shape[0], 1, span, span))
        spatial_b.append(torch.zeros_like(ref.spatial.bias))
        project_w.append(torch.zeros_like(ref.project.weight))
    return {
        "expand.weight": torch.cat(expand_w, 0),
        "expand.bias": torch.cat(expand_b, 0),
        "spatial.weight": torch.cat(spatial_w, 0),
        "spatial.bias": torch.cat(spatial_b, 0),
        "project.weight": torch.cat(project_w, 1),
        "project.bias": project_b,
    }


class _Encoder(nn.Module):
    """A branch's stem, folded levels and downsamplings, walked by ``fusionnet.encode``."""

    def __init__(self, stem: nn.Module, levels: list[FoldedDGME], downs: nn.ModuleList):
        super().__init__()
        self.stem, self.levels, self.downs = stem, nn.ModuleList(levels), downs


def _static(index: int, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A folded block carries its plan in its weights: no routing."""
    return layer(x)


class FoldedNet(nn.Module):
    """The plan path of ``FusionNet.forward`` for RGB input, with static blocks.

    ``(vis (B,3,H,W), ir (B,1,H,W)) -> fused (B,3,H,W)``. The plan lives in tensors: the PKDM
    strengths in the ``blend`` buffer, the routing in the FoldedDGME weights. ``stages`` are the
    PKDM stages the network computes (default all).
    """

    def __init__(self, model: FusionNet, stages: tuple[bool, ...] = ALL_STAGES):
        super().__init__()
        cfg = model.cfg
        if len(stages) != len(STAGES):
            raise ParameterError(f"`stages` needs one flag per PKDM stage ({', '.join(STAGES)}), got {len(stages)}")
        self.cfg = cfg
        self.stages = tuple(bool(s) for s in stages)
        self.multiple = cfg.multiple
        self.span = kernel_span(cfg.expert_kernels)
        self.slots = cfg.top_k
        self.pkdm = copy.deepcopy(model.pkdm)
        self.register_buffer("blend", torch.zeros(1, len(model.pkdm.blend_bias)))

        def blocks(layers: list[DGME] | nn.ModuleList) -> list[FoldedDGME]:
            return [
                FoldedDGME(l.experts[0].expand.in_channels, l.experts[0].expand.out_channels, self.slots, self.span)
                for l in layers
            ]

        vb, ib = model.vis_branch, model.ir_branch
        self.vis_enc = _Encoder(copy.deepcopy(vb.stem), blocks(vb.levels), copy.deepcopy(vb.downs))
        self.ir_enc = _Encoder(copy.deepcopy(ib.stem), blocks(ib.levels), copy.deepcopy(ib.downs))
        self.decoder = nn.ModuleList(blocks(model.decoder))
        self.ups = copy.deepcopy(model.ups)
        self.head = copy.deepcopy(model.fused_head)
        self.sources = list(model.dgme_layers())  # a plain list: the experts refold reads, not submodules

    def folded_layers(self) -> list[FoldedDGME]:
        """In plan order: visible encoder, infrared encoder, decoder."""
        return [*self.vis_enc.levels, *self.ir_enc.levels, *self.decoder]

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        dtype = self.blend.dtype  # the module's precision; inputs and output stay float32 outside
        vis, ir = vis.to(dtype), ir.to(dtype)
        h, w = vis.shape[-2:]
        if self.cfg.pkdm:
            vis_e, ir_e = self.pkdm(vis, ir, self.blend.expand(vis.shape[0], -1), self.stages)
        else:  # the ablation without pre-enhancement (FusionConfig.pkdm): as the eager model
            vis_e, ir_e = vis, ir
        vis_feats = encode(self.vis_enc, _pad_to_multiple(vis_e, self.multiple), _static, 0)
        ir_feats = encode(self.ir_enc, _pad_to_multiple(ir_e, self.multiple), _static, 0)
        y = decode([torch.cat((v, i), 1) for v, i in zip(vis_feats, ir_feats)], self.decoder, self.ups, _static, 0)
        fused_y = fused_luminance(self.cfg, luminance(vis_e), ir_e, self.head(y)[..., :h, :w])
        return replace_luminance(vis, fused_y).clamp(0.0, 1.0).float()


def plan_tensors(folded: FoldedNet, plan: Plan) -> dict[str, torch.Tensor]:
    """Every tensor of ``folded`` that depends on the plan, by state-dict name.

    These are the only tensors a plan change touches: backends update exactly these
    (in place, as AOTInductor constants, or by TensorRT refit). A network without PKDM stages has
    no ``blend``; one that lacks a stage the plan needs refuses the plan.
    """
    layers = folded.sources
    if len(plan.layers) != len(layers):
        raise RtfuseError(f"plan has {len(plan.layers)} layers, the model {len(layers)}")
    lacking = [s for s, need, have in zip(STAGES, plan.active_stages, folded.stages) if need and not have]
    if lacking:
        raise RtfuseError(f"the plan needs the PKDM stage(s) {', '.join(lacking)}, which this engine was built "
                          f"without (stages {stages_spec(folded.stages)}); build one with stages all")
    names = {id(m): n for n, m in folded.named_modules()}
    out: dict[str, torch.Tensor] = {}
    if folded.cfg.pkdm and any(folded.stages):
        out["blend"] = torch.tensor([plan.stage_strengths], dtype=torch.float32)
    for layer, block, lp in zip(layers, folded.folded_layers(), plan.layers):
        prefix = names[id(block)]
        for key, value in folded_weights(layer, lp, folded.slots, folded.span).items():
            out[f"{prefix}.{key}"] = value
    return out


@torch.no_grad()
def refold(folded: FoldedNet, plan: Plan) -> None:
    """Switch ``folded`` to ``plan`` by copying weights in place (same storage, same graph)."""
    state = dict(folded.named_parameters()) | dict(folded.named_buffers())
    for name, value in plan_tensors(folded, plan).items():
        state[name].copy_(value)


def fold(model: FusionNet, plan: Plan, stages: tuple[bool, ...] = ALL_STAGES) -> FoldedNet:
    """A static module equal to ``model(vis, ir, plan=plan).fused`` for RGB input."""
    folded = FoldedNet(model, stages).to(next(model.parameters()).device).eval()
    refold(folded, plan)
    return folded


def dense_plan(plan: Plan, num_experts: int) -> Plan:
    """The same routing with every expert computed (weight 0 off the plan): the dense baseline."""
    layers = []
    for lp in plan.layers:
        weight = dict(zip(lp.experts, lp.weights))
        layers.append(LayerPlan(tuple(range(num_experts)), tuple(weight.get(e, 0.0) for e in range(num_experts))))
    return Plan(tuple(layers), plan.stage_strengths, plan.label, plan.probs, plan.severity)
