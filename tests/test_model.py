"""The fusion model: shapes, sparse routing, plans, gradients, colour, LoRA."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rtfuse.checkpoint import load_checkpoint, save_checkpoint
from rtfuse.color import luminance, replace_luminance, rgb_to_ycbcr, ycbcr_to_rgb
from rtfuse.degrade import degrade_pair
from rtfuse.errors import RtfuseError
from rtfuse.fuser import Fuser
from rtfuse.model import TASK_FUSION, create_model, dispatch, fusion_macs
from rtfuse.model.config import FusionConfig, get_config
from rtfuse.model.dagm import DAGM
from rtfuse.model.fusionnet import Down
from rtfuse.model.pkdm import Derain, laplacian, light_enhancement_curves, upsample_bilinear
from rtfuse.model.pyramid import laplacian_fusion


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("rt").eval()


@pytest.fixture(scope="module")
def fuser(model):
    return Fuser(model, trained=False, source="test")


@pytest.mark.parametrize("h,w", [(37, 51), (64, 64), (97, 130), (5, 9)])
def test_output_has_input_size(fuser, h, w):
    rng = np.random.default_rng(0)
    vis = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (h, w), dtype=np.uint8)
    out = fuser(vis, ir)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


def test_gray_visible_gives_gray_output(fuser):
    rng = np.random.default_rng(1)
    vis = rng.integers(0, 256, (40, 48), dtype=np.uint8)
    ir = rng.integers(0, 256, (40, 48), dtype=np.uint8)
    out = fuser(vis, ir)
    assert out.shape == (40, 48, 3)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_16bit_infrared_goes_through_gain_control(fuser):
    rng = np.random.default_rng(2)
    vis = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    ir8 = rng.integers(0, 256, (32, 40), dtype=np.uint8)
    # A 14-bit radiometric frame: narrow band around 7000 counts, same structure as ir8.
    ir16 = (7000 + ir8.astype(np.uint16) * 4).astype(np.uint16)
    plan = fuser.plan_for(vis, ir8)
    out8, out16 = fuser(vis, ir8, plan=plan), fuser(vis, ir16, plan=plan)
    assert out16.shape == (32, 40, 3)
    # Gain control maps the narrow 16-bit band onto the full range: result close to the 8-bit one.
    assert np.abs(out8.astype(int) - out16.astype(int)).mean() < 8


def test_sparse_dispatch_equals_dense_reference(model):
    torch.manual_seed(3)
    layer = model.vis_branch.levels[1]
    x = torch.randn(6, layer.experts[0].expand.in_channels, 12, 10)
    d = torch.randn(6, model.cfg.deg_dim)
    gates = layer.gate(d, noisy=True).gates
    assert int((gates > 0).sum(1).max()) == model.cfg.top_k
    with torch.no_grad():
        sparse = dispatch(layer.experts, x, gates)
        dense = sum(gates[:, e].view(-1, 1, 1, 1) * expert(x) for e, expert in enumerate(layer.experts))
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)


def test_dispatch_runs_only_routed_experts(model):
    layer = model.vis_branch.levels[0]
    calls = []
    hooks = [ex.register_forward_hook(lambda m, i, o, e=e: calls.append((e, i[0].shape[0]))) for e, ex in enumerate(layer.experts)]
    try:
        gates = torch.zeros(3, len(layer.experts))
        gates[0, [1, 4]] = 0.5
        gates[1, [1, 2]] = 0.5
        gates[2, [4, 7]] = 0.5
        dispatch(layer.experts, torch.randn(3, layer.experts[0].expand.in_channels, 8, 8), gates)
    finally:
        for h in hooks:
            h.remove()
    assert sorted(calls) == [(1, 2), (2, 1), (4, 2), (7, 1)]


def test_plan_path_equals_gating_path(model):
    torch.manual_seed(4)
    vis, ir = torch.rand(1, 3, 48, 64), torch.rand(1, 1, 48, 64)
    with torch.no_grad():
        deg = model.dagm(vis, ir)
        plan = model.plan(deg.vector, deg)
        a = model(vis, ir, plan=plan).fused
        b = model(vis, ir, d_deg=deg.vector, noisy=False).fused
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert len(plan.layers) == len(model.dgme_layers())
    assert all(len(lp.experts) == model.cfg.top_k for lp in plan.layers)
    assert all(abs(sum(lp.weights) - 1) < 1e-5 for lp in plan.layers)
    assert plan.label in model.cfg.classes and len(plan.plan_id) == 8


def test_plan_skips_pkdm_stages_of_zero_strength_exactly(model):
    """A stage whose plan strength is 0 is not run (half the eager time on a clean scene), and the
    output is bit-identical to running it and blending by 0."""
    torch.manual_seed(5)
    vis, ir = torch.rand(1, 3, 48, 64), torch.rand(1, 1, 48, 64)
    with torch.no_grad():
        deg = model.dagm(vis, ir)
        plan = dataclasses.replace(model.plan(deg.vector, deg), stage_strengths=(0.0, 0.4, 0.0))
        calls: list[str] = []
        hooks = [getattr(model.pkdm, name).register_forward_hook(lambda m, i, o, name=name: calls.append(name))
                 for name in ("dehaze", "lowlight", "derain")]
        try:
            skipped = model(vis, ir, plan=plan).fused
        finally:
            for hook in hooks:
                hook.remove()
        weights = vis.new_tensor(plan.stage_strengths)[None]
        every_stage, _ = model.pkdm(vis, ir, weights)
        skipped_stages, _ = model.pkdm(vis, ir, weights, active=(False, True, False))
    assert calls == ["lowlight"]
    assert torch.equal(every_stage, skipped_stages)
    assert skipped.shape == vis.shape


def test_every_expert_gets_gradient_in_training():
    torch.manual_seed(5)
    model = create_model("rt").train()
    # 48 varied degradation vectors: an expert left unrouted by chance has odds below 1e-5.
    vis, ir = torch.rand(48, 3, 16, 16), torch.rand(48, 1, 16, 16)
    d_deg = torch.randn(48, model.cfg.deg_dim) * 3
    out = model(vis, ir, d_deg=d_deg, reconstruct=True)
    loss = out.fused_y.mean() + out.recon_vis.mean() + out.recon_ir.mean()
    # Load balancing makes the gates themselves trainable even where routing is sparse.
    loss = loss + sum(g.load.var() for g in out.gates[TASK_FUSION])
    loss.backward()
    for i, layer in enumerate(model.dgme_layers()):
        for e, expert in enumerate(layer.experts):
            grad = expert.project.weight.grad
            assert grad is not None and grad.abs().sum() > 0, f"layer {i} expert {e} got no gradient"
        assert layer.gate.w_gate.weight.grad.abs().sum() > 0


def test_chroma_comes_from_the_visible_camera_not_from_pkdm():
    """PKDM enhances what the fusion sees; the colour of the output stays the camera's."""
    model = Fuser.default().model
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:96] / 64.0
    scene = np.stack([0.5 + 0.3 * np.sin(3 * xx), 0.4 + 0.3 * np.cos(2 * yy), 0.3 + 0.2 * np.sin(2 * xx + yy)], -1)
    vis = (np.clip(scene + rng.normal(0, 0.03, scene.shape), 0, 1) * 255).astype(np.uint8)
    ir = (np.clip(0.3 + 0.4 * yy + rng.normal(0, 0.05, yy.shape), 0, 1) * 255).astype(np.uint8)
    vis, ir = degrade_pair(vis, ir, "haze:0.6,low_light:0.6", seed=1)  # a night fog: PKDM works hard
    vis = torch.from_numpy(vis).permute(2, 0, 1)[None].float() / 255
    ir = torch.from_numpy(ir)[None, None].float() / 255
    with torch.no_grad():  # every stage at full strength, whatever the evidence says of this small scene
        out = model(vis, ir, plan=dataclasses.replace(model.plan_for(vis, ir), stage_strengths=(1.0, 1.0, 1.0)))
    fused_cc, vis_cc, enhanced_cc = (rgb_to_ycbcr(x)[:, 1:] for x in (out.fused, vis, out.vis_enhanced))
    inside = ((out.fused > 0.001) & (out.fused < 0.999)).all(1, keepdim=True).expand(-1, 2, -1, -1)
    assert inside.float().mean() > 0.5  # the comparison covers most pixels (no clipping there)
    torch.testing.assert_close(fused_cc[inside], vis_cc[inside], atol=1e-5, rtol=0)
    # not vacuous: at most pixels PKDM's chroma lies 10x the tolerance away from the camera's
    assert ((enhanced_cc - vis_cc).abs() > 1e-4).float().mean() > 0.5


def test_laplacian_is_the_replicate_padded_convolution():
    x = torch.rand(2, 1, 13, 17)
    kernel = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]]).view(1, 1, 3, 3)
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), kernel)
    torch.testing.assert_close(laplacian(x), expected, atol=1e-6, rtol=0)


def test_light_curves_brighten_dark_pixels_within_range():
    x = torch.linspace(0, 1, 11).view(1, 1, 1, 11).expand(1, 3, 1, 11)
    assert torch.equal(light_enhancement_curves(x, torch.zeros(1, 1, 1, 11), 8), x)
    out = light_enhancement_curves(x, torch.full((1, 1, 1, 11), 0.5), 8)
    assert out.min() >= 0 and out.max() <= 1
    assert (out[..., 1:-1] > x[..., 1:-1]).all() and out[..., 0].eq(0).all() and out[..., -1].eq(1).all()


def test_light_curves_iterate_the_zero_dce_curve():
    torch.manual_seed(0)
    x, r = torch.rand(2, 3, 9, 10), torch.rand(2, 1, 9, 10) * 2 - 1
    expected = x
    for _ in range(8):
        expected = expected + r * expected * (1 - expected)
    # the rewritten form rounds differently: up to 8e-6 apart over 300 random draws in float32
    torch.testing.assert_close(light_enhancement_curves(x, r, 8), expected, atol=2e-5, rtol=0)


@pytest.mark.parametrize("size, out", [((6, 10), (48, 80)), ((5, 7), (20, 14)), ((60, 80), (480, 640)), ((5, 7), (23, 30))])
def test_upsample_bilinear_equals_interpolate(size, out):
    x = torch.rand(2, 2, *size)
    expected = torch.nn.functional.interpolate(x, size=out, mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample_bilinear(x, out), expected, atol=1e-6, rtol=0)


def test_down_is_unshuffle_then_pointwise_conv():
    down = Down(3, 8, 4)
    x = torch.rand(2, 3, 16, 24)
    expected = down.conv(torch.nn.functional.pixel_unshuffle(x, 4))
    torch.testing.assert_close(down(x), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("h, w", [(32, 48), (29, 31)])
def test_derain_starts_as_identity_and_keeps_any_size(h, w):
    derain = Derain(get_config("rt"))
    x = torch.rand(1, 3, h, w)
    torch.testing.assert_close(derain(x), x)
    torch.nn.init.normal_(derain.net[-1].weight, std=0.1)
    out = derain(x)
    assert out.shape == x.shape
    rain = x - out  # gray: the same layer leaves every channel (up to the clamp)
    inside = ((out > 0) & (out < 1)).all(1, keepdim=True).expand_as(rain)
    torch.testing.assert_close(rain[:, 0][inside[:, 0]], rain[:, 1][inside[:, 1]], atol=1e-6, rtol=0)


@pytest.mark.parametrize("base", ["pyramid", "max"])
def test_fusion_head_corrects_the_configured_base(base):
    torch.manual_seed(0)
    model = create_model("rt", base=base).eval()
    torch.nn.init.zeros_(model.fused_head.conv.weight)  # no correction: the output is the base
    vis, ir = torch.rand(1, 3, 45, 70), torch.rand(1, 1, 45, 70)
    with torch.no_grad():
        out = model(vis, ir)
    vis_y, ir_e = luminance(out.vis_enhanced), out.ir_enhanced
    if base == "pyramid":
        expected = laplacian_fusion(vis_y, ir_e, 4, "max", 5)
    else:
        expected = torch.maximum(vis_y, ir_e)
    torch.testing.assert_close(out.fused_y, expected.clamp(0, 1), atol=1e-6, rtol=0)


def test_checkpoints_from_before_the_base_option_fuse_on_max():
    old = {k: v for k, v in get_config("rt").to_dict().items() if k != "base"}
    assert FusionConfig.from_dict(old).base == "max"
    with pytest.raises(RtfuseError, match="unknown fusion base 'mean'.*rtfuse_train.experiments"):
        create_model("rt", base="mean")


def test_the_product_registers_what_it_ships_and_the_paper_ablations():
    """Whatever rtfuse itself imports (the CLI, the fuser, the engines), no experiment registers."""
    code = ("import rtfuse.cli, rtfuse.fuser, rtfuse.engine, rtfuse.pipeline\n"
            "from rtfuse.model import MODEL_CONFIGS\nfrom rtfuse.model.bases import base_names\n"
            "print(sorted(MODEL_CONFIGS), base_names())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['base', 'rt', 'rt-dense', 'rt-nopkdm'] ('pyramid', 'max')"


def test_experiment_checkpoints_load_where_the_experiments_are_registered(tmp_path):
    """An experiment's checkpoint (rt-sel: a base whose head has two outputs) loads once
    rtfuse_train.experiments registered it, and fails with that hint in the product alone."""
    from rtfuse_train import experiments

    assert "rt-sel" in experiments.registered_models()

    torch.manual_seed(0)
    model = create_model("rt-sel").eval()
    assert model.fused_head.conv.out_channels == 2 * model.cfg.stem ** 2
    save_checkpoint(tmp_path / "sel.pt", model)
    vis, ir = torch.rand(1, 3, 40, 56), torch.rand(1, 1, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(tmp_path / "sel.pt")[0].eval()(vis, ir).fused, model(vis, ir).fused)
    code = f"from rtfuse.checkpoint import load_checkpoint\nload_checkpoint({str(tmp_path / 'sel.pt')!r})"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "unknown fusion base 'select'" in r.stderr and "rtfuse_train.experiments" in r.stderr


def test_an_option_that_left_the_product_migrates_to_its_variant():
    """derain_highpass (rt-derain-hp) became a variant: dropped at its neutral value (every product
    checkpoint), listed in ``extra["variants"]`` otherwise, and applied where it is registered."""
    from rtfuse_train import experiments

    written_before = {**get_config("rt").to_dict(), "base": "max", "derain_highpass": False}
    assert FusionConfig.from_dict(written_before) == FusionConfig.from_dict({**written_before, "derain_highpass": False})
    assert FusionConfig.from_dict(written_before).extra == {}
    migrated = FusionConfig.from_dict({**written_before, "derain_highpass": True})
    assert migrated.extra == {"variants": ["derain-highpass"]} and "rt-derain-hp" in experiments.registered_models()
    torch.manual_seed(0)
    plain, variant = create_model(dataclasses.replace(migrated, extra={})), create_model(migrated)
    variant.load_state_dict(plain.state_dict())
    torch.nn.init.normal_(plain.pkdm.derain.net[-1].bias, std=0.1)  # a block-wide offset to remove
    variant.pkdm.derain.net[-1].bias.data.copy_(plain.pkdm.derain.net[-1].bias)
    x = torch.rand(1, 3, 16, 16)
    layer = x - variant.pkdm.derain(x)
    assert (x - plain.pkdm.derain(x) - layer).abs().max() > 1e-3  # the variant changed the layer
    torch.testing.assert_close(variant.pkdm.derain.net(F.pixel_unshuffle(luminance(x), 4)).mean(1),
                               torch.zeros(1, 4, 4), atol=1e-6, rtol=0)


def test_ycbcr_round_trip():
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-6, rtol=0)


def test_replacing_luminance_keeps_chroma():
    rgb, y = torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8)
    expected = ycbcr_to_rgb(torch.cat((y, rgb_to_ycbcr(rgb)[:, 1:]), 1))
    torch.testing.assert_close(replace_luminance(rgb, y), expected, atol=1e-6, rtol=0)


def test_rt_fits_the_cpu_budget(model):
    macs = fusion_macs(model, 480, 640)
    assert macs["fusion"] <= 1.0e9, macs


def test_base_is_larger_than_rt(model):
    assert fusion_macs(create_model("base"), 64, 64)["fusion"] > fusion_macs(model, 64, 64)["fusion"]


def test_lora_trains_adapters_only():
    """Tiny randomly initialised ViT (same open_clip + peft code path as ViT-B-32; no download)."""
    torch.manual_seed(7)
    cfg = get_config("rt", encoder="clip")
    dagm = DAGM(cfg, clip_vision_overrides=dict(layers=2, width=64, patch_size=16, image_size=32))
    params = dict(dagm.encoder.visual.named_parameters())
    base = {n: p.detach().clone() for n, p in params.items() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in params.items() if p.requires_grad}
    assert any(".attn.in_A" in n for n in lora), "LoRA must adapt the attention module itself"
    assert any("c_fc.lora_A" in n for n in lora) and any("c_proj.lora_A" in n for n in lora)
    assert any(".attn.base.in_proj_weight" in n for n in base)
    trainable = [p for p in dagm.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=0.5)
    vis, ir = torch.rand(4, 3, 40, 40), torch.rand(4, 1, 40, 40)
    for _ in range(4):  # LoRA B starts at zero: A moves only from the second step on
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(dagm(vis, ir).logits, torch.tensor([0, 1, 2, 3]))
        loss.backward()
        opt.step()
    after = dict(dagm.encoder.visual.named_parameters())
    changed = [n for n in lora if not torch.equal(lora[n], after[n])]
    assert any(".attn.in_" in n for n in changed) and any(".attn.out_" in n for n in changed)
    assert any("c_fc.lora_" in n for n in changed) and any("c_proj.lora_" in n for n in changed)
    for n, p in base.items():
        assert torch.equal(p, after[n]), f"base weight {n} changed"
    dagm.eval()
    with torch.no_grad():
        assert torch.equal(dagm(vis, ir).logits, dagm(vis, ir).logits)


def test_gray_stored_as_rgb_stays_gray(fuser):
    rng = np.random.default_rng(8)
    gray = rng.integers(0, 256, (40, 48), dtype=np.uint8)
    vis = np.repeat(gray[..., None], 3, axis=2)
    out = fuser(vis, rng.integers(0, 256, (40, 48), dtype=np.uint8))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    colour = vis.copy()
    colour[5, 7, 0] ^= 1  # one differing pixel off the sampling grid: still colour
    from rtfuse.fuser import is_gray_rgb
    assert is_gray_rgb(vis) and not is_gray_rgb(colour)


def test_dagm_statistics_see_exposure_and_streak_orientation():
    from rtfuse.model.dagm import HISTOGRAM_BINS, detail_maps, luma_histogram

    white = torch.ones(2, 3, 16, 16)
    hist = luma_histogram(white)
    assert hist.shape == (2, HISTOGRAM_BINS) and torch.allclose(hist.sum(1), torch.ones(2))
    assert float(hist[0, -1]) == pytest.approx(1.0)
    streaks = torch.zeros(1, 3, 32, 32)
    streaks[..., ::4] = 1.0  # vertical lines, like rain: horizontal gradients only
    lap, dx, dy = detail_maps(streaks)[0].mean((1, 2))
    assert dx > 0.4 and float(dy) == 0.0 and lap > 0


