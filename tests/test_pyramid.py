"""The tensor Laplacian pyramid against OpenCV, its reference."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from rtfuse.model.pyramid import collapse_pyramid, laplacian_fusion, laplacian_pyramid, pyr_down, pyr_up, pyramid_levels


@pytest.mark.parametrize("shape", [(64, 48), (63, 47), (33, 20), (9, 9)])
def test_pyr_down_and_up_equal_opencv(shape):
    img = np.random.default_rng(0).random(shape).astype(np.float32)
    down = cv2.pyrDown(img)
    up = cv2.pyrUp(down, dstsize=(shape[1], shape[0]))
    t = torch.from_numpy(img)[None, None]
    np.testing.assert_allclose(pyr_down(t)[0, 0].numpy(), down, atol=1e-6)
    np.testing.assert_allclose(pyr_up(torch.from_numpy(down)[None, None], shape)[0, 0].numpy(), up, atol=1e-6)


def test_pyramid_collapses_to_its_image_per_channel():
    x = torch.rand(2, 3, 37, 50)
    bands = laplacian_pyramid(x, 3)
    assert [tuple(b.shape[-2:]) for b in bands] == [(37, 50), (19, 25), (10, 13), (5, 7)]
    torch.testing.assert_close(collapse_pyramid(bands), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(pyr_down(x)[1], pyr_down(x[1:2])[0])  # channels and samples independent


def test_levels_keep_eight_pixels_on_the_coarsest_side():
    assert pyramid_levels((40, 52)) == 2
    assert pyramid_levels((1, 1, 480, 640)) == 4
    assert pyramid_levels((7, 100)) == 0


def test_fusion_keeps_the_stronger_detail_and_the_mean_base():
    flat = torch.full((1, 1, 64, 64), 0.5)
    edge = flat.clone()
    edge[..., 32:] = 0.9
    fused = laplacian_fusion(flat, edge)
    assert float(fused[..., 32].mean() - fused[..., 31].mean()) > 0.35  # the mean would halve it to 0.2
    torch.testing.assert_close(laplacian_fusion(edge, edge), edge, atol=1e-5, rtol=0)
    bright = torch.full_like(flat, 0.9)
    torch.testing.assert_close(laplacian_fusion(flat, bright), torch.full_like(flat, 0.7), atol=1e-5, rtol=0)


def test_max_low_pass_keeps_the_brighter_coarse_scene_and_the_same_detail():
    flat = torch.full((1, 1, 64, 64), 0.5)
    bright = torch.full_like(flat, 0.9)
    torch.testing.assert_close(laplacian_fusion(flat, bright, low_pass="max"), bright, atol=1e-5, rtol=0)
    edge = flat.clone()
    edge[..., 32:] = 0.9
    mean, brighter = laplacian_fusion(flat, edge), laplacian_fusion(flat, edge, low_pass="max")
    assert float(brighter[..., 32].mean() - brighter[..., 31].mean()) > 0.35  # the edge kept as before
    assert float((brighter - mean).min()) >= -1e-5 and float((brighter - mean).max()) > 0.1  # lifted, never lowered
    with pytest.raises(ValueError, match="low_pass"):
        laplacian_fusion(flat, edge, low_pass="min")
