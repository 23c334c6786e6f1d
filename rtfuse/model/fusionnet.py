"""The fusion network: PKDM -> two-branch DGME U-Net -> fused luminance (+ training heads).

Layer order of the DGME layers (and of a plan): visible encoder levels 0..L-1, infrared encoder
levels 0..L-1, decoder levels L-1..0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from rtfuse.color import as_rgb, luminance, replace_luminance
from rtfuse.model.bases import get_base
from rtfuse.model.config import FusionConfig
from rtfuse.model.dagm import DAGM, Degradation
from rtfuse.model.dgme import DGME, GateOutput
from rtfuse.model.evidence import measure
from rtfuse.model.pkdm import PKDM
from rtfuse.model.variants import apply_variants

TASK_FUSION, TASK_RECON = 0, 1


@dataclass(frozen=True)
class LayerPlan:
    experts: tuple[int, ...]
    weights: tuple[float, ...]


@dataclass(frozen=True)
class Plan:
    """What a clip runs: per DGME layer the chosen experts and weights, and per PKDM stage its strength."""

    layers: tuple[LayerPlan, ...]
    stage_strengths: tuple[float, ...]  # how much of each PKDM stage's output replaces its input
    label: str = ""
    probs: dict[str, float] = field(default_factory=dict, compare=False, hash=False)
    severity: float = 0.0
    # Per PKDM stage, the physical evidence that its degradation is present (rtfuse.model.evidence),
    # which scaled the learned strengths into ``stage_strengths``; empty when the plan was not gated.
    stage_gates: tuple[float, ...] = field(default=(), compare=False, hash=False)

    @property
    def plan_id(self) -> str:
        """Short stable id of the routing (experts and rounded weights)."""
        text = ";".join(f"{l.experts}:{','.join(f'{w:.3f}' for w in l.weights)}" for l in self.layers)
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    @property
    def active_stages(self) -> tuple[bool, ...]:
        """Per PKDM stage, whether it acts: a stage of strength 0 returns its input exactly."""
        return tuple(s != 0.0 for s in self.stage_strengths)


@dataclass
class FusionOutput:
    fused: torch.Tensor  # (B,3,H,W) RGB, or (B,1,H,W) for gray visible input
    fused_y: torch.Tensor  # (B,1,H,W) fused luminance
    vis_enhanced: torch.Tensor
    ir_enhanced: torch.Tensor
    recon_vis: torch.Tensor | None = None
    recon_ir: torch.Tensor | None = None
    gates: dict[int, list[GateOutput]] = field(default_factory=dict)  # task -> per-layer gates


def fused_luminance(cfg: FusionConfig, vis_y: torch.Tensor, ir: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """The fusion head's output ``head`` applied to the configured base (``FusionConfig.base``), clamped to 0..1."""
    return get_base(cfg.base).apply(vis_y, ir, head).clamp(0.0, 1.0)


LayerFn = Callable[[int, nn.Module, torch.Tensor], torch.Tensor]


def encode(branch: nn.Module, x: torch.Tensor, apply: LayerFn, first: int) -> list[torch.Tensor]:
    """The U-Net walk down one branch (``stem``, ``levels``, ``downs``): the features of each level.

    ``apply(index, layer, x)`` runs DGME layer number ``index`` (plan order: visible levels,
    infrared levels, decoder), so that the eager model (routing by gates or by a plan) and the
    folded engine (static blocks) walk the same network.
    """
    x = branch.stem(x)
    feats = []
    for lvl, layer in enumerate(branch.levels):
        x = apply(first + lvl, layer, x)
        feats.append(x)
        if lvl < len(branch.levels) - 1:
            x = branch.downs[lvl](x)
    return feats


def decode(skips: list[torch.Tensor], decoder: nn.ModuleList, ups: nn.ModuleList, apply: LayerFn, first: int) -> torch.Tensor:
    """The U-Net walk up: from the deepest fused features, each level upsampled plus its skip."""
    y = skips[-1]
    for j, layer in enumerate(decoder):
        if j > 0:
            y = ups[j - 1](y) + skips[len(skips) - 1 - j]
        y = apply(first + j, layer, y)
    return y


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class Down(nn.Module):
    """PixelUnshuffle + 1x1 conv: lower resolution by lossless rearrangement, then mixing.

    Computed as the equal convolution with kernel = stride = factor (the 1x1 weights viewed as
    (out, in, factor, factor)): no rearranged copy of the input, which compilers then keep as one
    buffer instead of recomputing it for every reader.
    """

    def __init__(self, c_in: int, c_out: int, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(factor * factor * c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factor
        weight = self.conv.weight.view(self.conv.out_channels, -1, f, f)
        return F.conv2d(x, weight, self.conv.bias, stride=f)


class Up(nn.Module):
    """PixelShuffle(2) + 1x1 conv."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in // 4, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pixel_shuffle(x, 2))


class Head(nn.Module):
    """1x1 conv to out*factor^2 channels at the stem resolution, PixelShuffle to full resolution."""

    def __init__(self, c_in: int, c_out: int, factor: int):
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(c_in, factor * factor * c_out, 1)
        nn.init.normal_(self.conv.weight, std=1e-3)  # near-identity residual, but gradient flows
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), self.factor)


class Branch(nn.Module):
    """One encoder branch: stem, then per level DGME (+ Down except at the deepest level)."""

    def __init__(self, in_ch: int, cfg: FusionConfig):
        super().__init__()
        ch = cfg.channels
        self.stem = Down(in_ch, ch[0], cfg.stem)
        self.levels = nn.ModuleList(
            DGME(c, max(1, round(c * cfg.expert_expansion)), cfg.expert_kernels, cfg.deg_dim, cfg.top_k) for c in ch
        )
        self.downs = nn.ModuleList(Down(ch[i], ch[i + 1]) for i in range(len(ch) - 1))


class FusionNet(nn.Module):
    def __init__(self, cfg: FusionConfig, clip_vision_overrides: dict | None = None):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.dagm = DAGM(cfg, clip_vision_overrides)
        self.pkdm = PKDM(cfg)
        self.vis_branch = Branch(3, cfg)
        self.ir_branch = Branch(1, cfg)
        self.task_embedding = nn.Embedding(2, cfg.task_dim)
        dec_gate_dim = cfg.deg_dim + cfg.task_dim
        self.decoder = nn.ModuleList(
            DGME(2 * c, max(1, round(2 * c * cfg.expert_expansion)), cfg.expert_kernels, dec_gate_dim, cfg.top_k)
            for c in reversed(ch)
        )
        self.ups = nn.ModuleList(Up(2 * ch[i + 1], 2 * ch[i]) for i in reversed(range(len(ch) - 1)))
        self.fused_head = Head(2 * ch[0], get_base(cfg.base).head_channels, cfg.stem)
        self.recon_vis_head = Head(2 * ch[0], 3, cfg.stem)
        self.recon_ir_head = Head(2 * ch[0], 1, cfg.stem)
        apply_variants(self, cfg.extra.get("variants", ()))

    # ----- gating -------------------------------------------------------------------------
    def dgme_layers(self) -> list[DGME]:
        return [*self.vis_branch.levels, *self.ir_branch.levels, *self.decoder]

    def gates(self, d_deg: torch.Tensor, task: int = TASK_FUSION, noisy: bool = False) -> list[GateOutput]:
        """Per-layer gates from the degradation vector (encoder) and task (decoder)."""
        task_vec = self.task_embedding.weight[task].expand(d_deg.shape[0], -1)
        dec_in = torch.cat((d_deg, task_vec), 1)
        n_enc = 2 * len(self.cfg.channels)
        return [
            layer.gate(d_deg if i < n_enc else dec_in, noisy=noisy) for i, layer in enumerate(self.dgme_layers())
        ]

    @torch.no_grad()
    def plan(self, d_deg: torch.Tensor, degradation: Degradation | None = None,
             stage_gates: tuple[float, ...] | None = None) -> Plan:
        """The clip's fixed routing from one degradation vector (batch of one).

        ``stage_gates`` (one per PKDM stage, in [0,1]) scale the learned stage strengths: the
        evidence that each stage's degradation is present. ``plan_for`` measures them on the frame.
        """
        d = d_deg.reshape(1, -1)
        layers = []
        for g in self.gates(d, TASK_FUSION, noisy=False):
            ids = g.gates[0].nonzero().squeeze(1)
            layers.append(LayerPlan(tuple(int(i) for i in ids), tuple(float(g.gates[0, i]) for i in ids)))
        strengths = self.pkdm.blend_weights(d)[0]
        if stage_gates is not None:
            strengths = strengths * strengths.new_tensor(stage_gates)
        stage_strengths = tuple(float(w) for w in strengths)
        label, probs, severity = "", {}, 0.0
        if degradation is not None:
            p = torch.softmax(degradation.logits[0], 0)
            probs = {c: round(float(v), 4) for c, v in zip(self.cfg.classes, p)}
            label = self.cfg.classes[int(p.argmax())]
            severity = float(degradation.severity[0])
        return Plan(tuple(layers), stage_strengths, label, probs, severity, tuple(stage_gates or ()))

    @torch.no_grad()
    def plan_for(self, vis: torch.Tensor, ir: torch.Tensor) -> Plan:
        """The plan of a clip from one of its frames: routing from DAGM, PKDM gated by the evidence
        measured on the visible frame, so that PKDM leaves a clean frame untouched."""
        deg = self.dagm(vis, ir)
        frame = vis[0].detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()
        return self.plan(deg.vector, deg, measure(frame).gates)

    # ----- forward ------------------------------------------------------------------------
    def forward(
        self,
        vis: torch.Tensor,
        ir: torch.Tensor,
        plan: Plan | None = None,
        d_deg: torch.Tensor | None = None,
        reconstruct: bool = False,
        noisy: bool | None = None,
        stage_gates: torch.Tensor | None = None,
    ) -> FusionOutput:
        """Fuse (B,3|1,H,W) visible with (B,1,H,W) infrared, both in [0,1].

        With ``plan`` only the planned experts run (inference). Otherwise gates come from
        ``d_deg`` (computed by DAGM when not given) with per-sample sparse dispatch; noisy gating
        defaults to the training mode. ``stage_gates`` (B, 3) multiplies PKDM's stage strengths:
        whether each degradation is present (training knows it; a plan carries it already).

        A colour output takes its chroma from the visible input, not from PKDM's enhanced image:
        PKDM is trained for the luminance the fusion sees, and its colour drifts (under haze its
        chroma error against the clean image was 4-6x the raw frame's; experiments/pkdm_effect.py).
        """
        h, w = vis.shape[-2:]
        gray_input = vis.shape[1] == 1
        vis3 = as_rgb(vis)
        noisy = self.training if noisy is None else noisy

        if plan is not None:
            blend_w = vis.new_tensor(plan.stage_strengths).expand(vis.shape[0], -1)
            active: tuple[bool, ...] | None = plan.active_stages
            route = lambda i, layer, x: layer.forward_plan(x, plan.layers[i].experts, plan.layers[i].weights)  # noqa: E731
            gates_by_task: dict[int, list[GateOutput]] = {}
        else:
            if d_deg is None:
                d_deg = self.dagm(vis3, ir).vector
            blend_w = self.pkdm.blend_weights(d_deg)
            active = None
            if stage_gates is not None:
                blend_w = blend_w * stage_gates
            gates_by_task = {TASK_FUSION: self.gates(d_deg, TASK_FUSION, noisy)}
            if reconstruct:
                gates_by_task[TASK_RECON] = self.gates(d_deg, TASK_RECON, noisy)

        vis_e, ir_e = self.pkdm(vis3, ir, blend_w, active) if self.cfg.pkdm else (vis3, ir)
        m = self.cfg.multiple
        vis_p, ir_p = _pad_to_multiple(vis_e, m), _pad_to_multiple(ir_e, m)

        def runner(task: int) -> LayerFn:
            if plan is not None:
                return route
            return lambda i, layer, x: layer(x, gates_by_task[task][i].gates)

        n = len(self.cfg.channels)
        fusion = runner(TASK_FUSION)
        vis_feats, ir_feats = encode(self.vis_branch, vis_p, fusion, 0), encode(self.ir_branch, ir_p, fusion, n)
        fused_skips = [torch.cat((v, i), 1) for v, i in zip(vis_feats, ir_feats)]
        y = decode(fused_skips, self.decoder, self.ups, fusion, 2 * n)
        fused_y = fused_luminance(self.cfg, luminance(vis_e), ir_e, self.fused_head(y)[..., :h, :w])
        if gray_input:
            fused = fused_y
        else:
            fused = replace_luminance(vis3, fused_y).clamp(0.0, 1.0)  # the camera's chroma (see the docstring)

        out = FusionOutput(fused, fused_y, vis_e, ir_e, gates=gates_by_task)
        if reconstruct:
            y_rec = decode(fused_skips, self.decoder, self.ups, runner(TASK_RECON), 2 * n) if plan is None else y
            out.recon_vis = (vis_e + self.recon_vis_head(y_rec)[..., :h, :w]).clamp(0.0, 1.0)
            out.recon_ir = (ir_e + self.recon_ir_head(y_rec)[..., :h, :w]).clamp(0.0, 1.0)
        return out
