"""Stage-2 loss terms (paper eq. 15-21), each a small pure function on tensors.

``L = a_pix L_pix + a_grad L_grad + a_recon L_recon + a_pkdm L_pkdm + a_aux (L_load + L_mi)``,
plus optional terms ``a_ssim L_ssim + a_qabf L_qabf`` (off by default; not in the paper).
References are the clean sources when degradations are synthetic (known), otherwise the PKDM
outputs, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rtfuse.metrics._kernels import DA, DG, KA, KG, TA, TG  # analysis_Qabf.m's sigmoid constants
from rtfuse.model import GateOutput

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_magnitude(y: torch.Tensor) -> torch.Tensor:
    """|d/dx| + |d/dy| of a (B,1,H,W) image with Sobel kernels (replicate border)."""
    k = torch.stack((_SOBEL_X, _SOBEL_X.t())).unsqueeze(1).to(y)
    g = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), k)
    return g.abs().sum(1, keepdim=True)


def intensity_loss(fused_y: torch.Tensor, vis_y: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """L_pix = |Y_f - max(Y_vis, Y_ir)|_1 (eq. 16)."""
    return F.l1_loss(fused_y, torch.maximum(vis_y, ir))


def gradient_loss(fused_y: torch.Tensor, vis_y: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """L_grad = | |grad Y_f| - max(|grad Y_vis|, |grad Y_ir|) |_1 (eq. 17)."""
    return F.l1_loss(sobel_magnitude(fused_y), torch.maximum(sobel_magnitude(vis_y), sobel_magnitude(ir)))


def target_losses(fused_y: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_pix, L_grad) against one target image instead of the sources' per-pixel maxima: the fusion
    of the clean sources by the model's own base, so that the head learns to undo degradations
    rather than to move a clean fusion towards the brighter source and the larger gradient."""
    return F.l1_loss(fused_y, target), F.l1_loss(sobel_magnitude(fused_y), sobel_magnitude(target))


def _box_mean(t: torch.Tensor, window: int) -> torch.Tensor:
    pad = window // 2
    return F.avg_pool2d(F.pad(t, (pad, pad, pad, pad), mode="reflect"), window, stride=1)


def structure_loss(fused_y: torch.Tensor, vis_y: torch.Tensor, ir: torch.Tensor, window: int = 7) -> torch.Tensor:
    """1 - SSIM of the fused image against, per pixel, the source with the larger local variance.

    An extension beyond the paper's loss: its intensity and gradient terms ask for the sources'
    maximum values, this one for the local structure (contrast and correlation) of the busier source,
    closer to what Qabf and VIF compare.
    """
    c1, c2 = 0.01**2, 0.03**2
    mf = _box_mean(fused_y, window)
    vf = _box_mean(fused_y * fused_y, window) - mf * mf
    ssims, variances = [], []
    for src in (vis_y, ir):
        ms = _box_mean(src, window)
        vs = _box_mean(src * src, window) - ms * ms
        cov = _box_mean(fused_y * src, window) - mf * ms
        ssims.append(((2 * mf * ms + c1) * (2 * cov + c2)) / ((mf * mf + ms * ms + c1) * (vf + vs + c2)))
        variances.append(vs)
    return 1.0 - torch.where(variances[0] >= variances[1], ssims[0], ssims[1]).mean()


# analysis_Qabf.m's Sobel as cross-correlation kernels: x = left minus right column, y = bottom minus top row
_QABF_SOBEL = torch.stack((-_SOBEL_X, _SOBEL_X.t())).unsqueeze(1)


def _qabf_edges(y: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel strength and orientation atan(gy/gx) (pi/2 where gx = 0), zero padding as conv2 'same'."""
    g = F.conv2d(y, _QABF_SOBEL.to(y), padding=1)
    gx, gy = g[:, :1], g[:, 1:]
    strength = torch.sqrt(gx * gx + gy * gy + eps * eps)
    flat_x = gx.abs() < eps
    safe_x = torch.where(flat_x, torch.ones_like(gx), gx)
    orientation = torch.where(flat_x, torch.full_like(gx, torch.pi / 2), torch.atan(gy / safe_x))
    return strength, orientation


def edge_preservation_loss(fused_y: torch.Tensor, vis_y: torch.Tensor, ir: torch.Tensor,
                           eps: float = 1e-6) -> torch.Tensor:
    """1 - Qabf of the fused image against the two sources, per sample, differentiable.

    An extension beyond the paper's loss: the gradient term asks for the larger Sobel magnitude
    exactly, Qabf (what the robustness table scores) credits an edge kept at about half its
    strength or more with the source's orientation. Same Sobel, orientation and sigmoids as
    ``rtfuse.metrics.qabf``; the ratio of equal strengths is 1 (the metric keeps a MATLAB quirk
    there that only exactly equal floats meet).
    """
    g_f, a_f = _qabf_edges(fused_y, eps)
    num = fused_y.new_zeros(fused_y.shape[0])
    den = fused_y.new_zeros(fused_y.shape[0])
    for src in (vis_y, ir):
        g_s, a_s = _qabf_edges(src, eps)
        ratio = torch.minimum(g_s, g_f) / torch.maximum(g_s, g_f)
        match = 1.0 - (a_s - a_f).abs() / (torch.pi / 2)
        kept = TG / (1.0 + torch.exp(KG * (ratio - DG))) * TA / (1.0 + torch.exp(KA * (match - DA)))
        num = num + (kept * g_s).flatten(1).sum(1)
        den = den + g_s.flatten(1).sum(1)
    return 1.0 - (num / den.clamp_min(eps)).mean()


def cv_squared(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Squared coefficient of variation with population variance; 0 for a single expert."""
    if x.numel() <= 1:
        return x.new_zeros(())
    return x.var(unbiased=False) / (x.mean() ** 2 + eps)


def load_balancing_loss(gates: list[GateOutput]) -> torch.Tensor:
    """Sum over layers of CV^2(importance) + CV^2(load) (Shazeer et al.; eq. 20)."""
    total = gates[0].gates.new_zeros(())
    for g in gates:
        total = total + cv_squared(g.importance)
        if g.load is not None:
            total = total + cv_squared(g.load)
    return total


def expert_task_mutual_information(per_task: list[list[GateOutput]], layers: slice | None = None) -> torch.Tensor:
    """I(E;T) summed over layers, from batch-average gate distributions per task (uniform p(T)).

    ``per_task[t][l]`` is task t's gate output at layer l; ``layers`` selects the layers whose
    gates see the task (the decoder).
    """
    n_layers = len(per_task[0])
    idx = range(n_layers)[layers] if layers is not None else range(n_layers)
    total = per_task[0][0].gates.new_zeros(())
    for l in idx:
        p_e_t = torch.stack([t[l].gates.mean(0) for t in per_task])  # (T, M)
        p_e_t = p_e_t / p_e_t.sum(1, keepdim=True).clamp_min(1e-12)
        p_e = p_e_t.mean(0, keepdim=True)
        ratio = (p_e_t.clamp_min(1e-12) / p_e.clamp_min(1e-12)).log()
        total = total + (p_e_t * ratio).sum(1).mean()
    return total


@dataclass(frozen=True)
class LossWeights:
    pix: float = 1.0
    grad: float = 1.0
    recon: float = 0.5
    pkdm: float = 0.5
    aux: float = 0.01
    ssim: float = 0.0  # structure_loss: not in the paper, off by default
    qabf: float = 0.0  # edge_preservation_loss: not in the paper, off by default

