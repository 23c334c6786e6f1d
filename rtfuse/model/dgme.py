"""DGME: degradation-guided sparse mixture of experts (paper eq. 8-10).

The gate reads only the degradation vector (plus, in the decoder, a task embedding), so one
clip has one fixed *expert plan*: per layer two expert ids and two weights. Training dispatches
samples sparsely to their experts (Shazeer et al.'s SparseDispatcher); inference with a plan
runs exactly the two chosen experts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class Expert(nn.Module):
    """1x1 expand -> depthwise (kh x kw, dilation) -> 1x1 project.

    The spatial kernel defines the receptive-field kind. Being depthwise between two pointwise
    convolutions, two experts fold exactly into one block (see rtfuse.engine.fold).
    """

    def __init__(self, channels: int, hidden: int, kernel: tuple[int, int, int]):
        super().__init__()
        kh, kw, dil = kernel
        self.kernel = kernel
        self.expand = nn.Conv2d(channels, hidden, 1)
        self.spatial = nn.Conv2d(
            hidden, hidden, (kh, kw), padding=(dil * (kh // 2), dil * (kw // 2)), dilation=dil, groups=hidden
        )
        self.project = nn.Conv2d(hidden, channels, 1)

    def _spatial(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel[:2] == (1, 1):
            # A 1x1 depthwise convolution is a per-channel affine map; computed as one, it avoids
            # PyTorch's per-group CPU fallback for this shape (same parameters, same result).
            return torch.addcmul(self.spatial.bias.view(1, -1, 1, 1), x, self.spatial.weight.view(1, -1, 1, 1))
        return self.spatial(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(F.relu(self._spatial(F.relu(self.expand(x)))))


@dataclass
class GateOutput:
    """Dense (B, M) gates with zeros outside the top-k, plus load-balancing statistics."""

    gates: torch.Tensor
    logits: torch.Tensor  # clean logits d W_g, (B, M)
    load: torch.Tensor | None = None  # expected number of samples per expert (noisy training only)

    @property
    def importance(self) -> torch.Tensor:
        return self.gates.sum(0)


class NoisyTopKGate(nn.Module):
    """G = d W_g + eps * softplus(d W_noise) (noise in training), top-k, softmax over the kept k."""

    def __init__(self, in_dim: int, num_experts: int, k: int):
        super().__init__()
        self.k = k
        self.w_gate = nn.Linear(in_dim, num_experts, bias=False)
        self.w_noise = nn.Linear(in_dim, num_experts, bias=False)
        nn.init.normal_(self.w_gate.weight, std=1.0 / math.sqrt(in_dim))
        nn.init.zeros_(self.w_noise.weight)

    def forward(self, d: torch.Tensor, noisy: bool = False) -> GateOutput:
        clean = self.w_gate(d)
        if not noisy:
            top_val, top_idx = clean.topk(self.k, dim=1)
            gates = torch.zeros_like(clean).scatter(1, top_idx, torch.softmax(top_val, dim=1))
            return GateOutput(gates, clean)
        noise_std = F.softplus(self.w_noise(d)) + 1e-2
        logits = clean + torch.randn_like(clean) * noise_std
        m = clean.shape[1]
        top_val, top_idx = logits.topk(min(self.k + 1, m), dim=1)
        gates = torch.zeros_like(logits).scatter(1, top_idx[:, : self.k], torch.softmax(top_val[:, : self.k], dim=1))
        load = self._load(clean, logits, noise_std, top_val) if self.k < m else (gates > 0).float().sum(0)
        return GateOutput(gates, clean, load)

    def _load(self, clean: torch.Tensor, noisy: torch.Tensor, std: torch.Tensor, top_val: torch.Tensor) -> torch.Tensor:
        """Smooth expected load: P(expert in top-k) under the gate noise (normal CDF)."""
        threshold_if_in = top_val[:, self.k : self.k + 1]
        threshold_if_out = top_val[:, self.k - 1 : self.k]
        normal = torch.distributions.Normal(0.0, 1.0)
        prob_if_in = normal.cdf((clean - threshold_if_in) / std)
        prob_if_out = normal.cdf((clean - threshold_if_out) / std)
        return torch.where(noisy > threshold_if_in, prob_if_in, prob_if_out).sum(0)


def dispatch(experts: nn.ModuleList, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """Sum_e g_e Expert_e(x), running each expert only on the samples routed to it."""
    out = torch.zeros_like(x)
    for e, expert in enumerate(experts):
        idx = gates[:, e].nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        weight = gates.index_select(0, idx)[:, e].view(-1, 1, 1, 1)
        out = out.index_add(0, idx, weight * expert(x.index_select(0, idx)))
    return out


class DGME(nn.Module):
    """Residual MoE layer: F + sum_e g_e Expert_e(F); shape preserving."""

    def __init__(self, channels: int, hidden: int, kernels: tuple[tuple[int, int, int], ...], gate_dim: int, k: int):
        super().__init__()
        self.experts = nn.ModuleList(Expert(channels, hidden, kern) for kern in kernels)
        self.gate = NoisyTopKGate(gate_dim, len(kernels), k)

    def forward(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        return x + dispatch(self.experts, x, gates)

    def forward_plan(self, x: torch.Tensor, ids: tuple[int, ...], weights: tuple[float, ...]) -> torch.Tensor:
        out = x
        for e, w in zip(ids, weights):
            out = out + w * self.experts[e](x)
        return out
