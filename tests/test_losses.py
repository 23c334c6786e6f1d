"""Stage-2 loss terms against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rtfuse.metrics.qabf import qabf
from rtfuse.model import GateOutput
from rtfuse_train.losses import (
    cv_squared,
    edge_preservation_loss,
    expert_task_mutual_information,
    gradient_loss,
    intensity_loss,
    load_balancing_loss,
    sobel_magnitude,
    structure_loss,
)


def test_sobel_of_a_ramp_and_a_constant():
    ramp = torch.arange(6.0).repeat(5, 1).view(1, 1, 5, 6)
    g = sobel_magnitude(ramp)
    assert torch.allclose(g[..., 1:-1, 1:-1], torch.full((3, 4), 8.0))  # Sobel x gain 8 on slope 1
    assert sobel_magnitude(torch.full((1, 1, 4, 4), 0.3)).abs().max() == 0


def test_intensity_loss_targets_the_pixelwise_max():
    vis = torch.tensor([[[[0.2, 0.8]]]])
    ir = torch.tensor([[[[0.6, 0.1]]]])
    assert intensity_loss(torch.tensor([[[[0.6, 0.8]]]]), vis, ir) == 0
    assert math.isclose(float(intensity_loss(torch.zeros(1, 1, 1, 2), vis, ir)), 0.7, rel_tol=1e-6)


def test_gradient_loss_zero_when_fused_has_the_stronger_edges():
    vis = torch.zeros(1, 1, 6, 6)
    vis[..., 3:] = 1.0
    ir = torch.zeros(1, 1, 6, 6)
    assert gradient_loss(vis, vis, ir) == 0
    assert gradient_loss(ir, vis, ir) > 0


def _split_texture(batch: int, side: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random texture, and sources that each see half of it (vis the left, ir the right) and flat grey elsewhere."""
    torch.manual_seed(0)
    texture = torch.rand(batch, 1, side, side)
    flat = torch.full_like(texture, 0.5)
    half = side // 2
    vis = torch.cat((texture[..., :half], flat[..., half:]), -1)
    ir = torch.cat((flat[..., :half], texture[..., half:]), -1)
    return texture, vis, ir


def test_structure_loss_follows_the_busier_source_per_pixel():
    both, vis, ir = _split_texture(1, 32)  # keeps each side's texture: the busier source everywhere
    assert float(structure_loss(both, vis, ir)) < 0.05
    assert float(structure_loss(vis, vis, ir)) > 0.3  # the right half's texture lost
    assert float(structure_loss(1.0 - both, vis, ir)) > 1.0  # inverted structure: negative SSIM


def test_edge_preservation_loss_is_one_minus_the_qabf_metric():
    rng = np.random.default_rng(0)
    kernel = np.ones(3) / 3
    smooth = lambda x: np.apply_along_axis(np.convolve, 1, x, kernel, mode="same")  # noqa: E731
    vis, ir = smooth(rng.random((40, 48))), smooth(rng.random((40, 48)).T).T
    fused = 0.6 * vis + 0.4 * ir + 0.05 * rng.random((40, 48))
    as_tensor = lambda x: torch.tensor(x).view(1, 1, *x.shape)  # noqa: E731
    loss = edge_preservation_loss(as_tensor(fused), as_tensor(vis), as_tensor(ir))
    assert float(loss) == pytest.approx(1.0 - qabf(ir, vis, fused), abs=1e-9)


def test_edge_preservation_loss_rewards_kept_edges_and_has_finite_gradients():
    texture, vis, ir = _split_texture(2, 24)
    flat = torch.full_like(texture, 0.5)
    kept = edge_preservation_loss(texture, vis, ir)
    faint = edge_preservation_loss(0.5 + 0.3 * (texture - 0.5), vis, ir)  # edges at 0.3 of their strength
    one_side = edge_preservation_loss(vis, vis, ir)
    flat.requires_grad_(True)
    lost = edge_preservation_loss(flat, vis, ir)
    lost.backward()
    lost = lost.detach()
    assert float(kept) < float(faint) < float(lost)
    assert float(kept) < float(one_side) < float(lost)  # the flat image keeps only the zero-padded border
    assert torch.isfinite(flat.grad).all()


def test_cv_squared_population_variance():
    x = torch.tensor([1.0, 3.0])
    assert math.isclose(float(cv_squared(x)), 1.0 / 4.0, rel_tol=1e-6)  # var 1, mean^2 4
    assert cv_squared(torch.tensor([2.0, 2.0, 2.0])) == 0
    assert cv_squared(torch.tensor([5.0])) == 0


def test_load_balancing_sums_importance_and_load_over_layers():
    balanced = GateOutput(torch.tensor([[0.5, 0.5], [0.5, 0.5]]), torch.zeros(2, 2), torch.tensor([1.0, 1.0]))
    skewed = GateOutput(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.zeros(2, 2), torch.tensor([2.0, 0.0]))
    assert load_balancing_loss([balanced]) == 0
    assert math.isclose(float(load_balancing_loss([skewed, balanced])), 2.0, rel_tol=1e-6)  # 1 + 1


def test_mutual_information_between_expert_and_task():
    same = GateOutput(torch.tensor([[0.5, 0.5, 0.0]]), torch.zeros(1, 3))
    assert abs(float(expert_task_mutual_information([[same], [same]]))) < 1e-6
    a = GateOutput(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2))
    b = GateOutput(torch.tensor([[0.0, 1.0]]), torch.zeros(1, 2))
    assert math.isclose(float(expert_task_mutual_information([[a], [b]])), math.log(2), rel_tol=1e-5)
    # Only the selected layers count.
    assert abs(float(expert_task_mutual_information([[a, same], [b, same]], slice(1, None)))) < 1e-6
