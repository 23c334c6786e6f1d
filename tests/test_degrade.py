"""Degradation synthesis: determinism, identity at severity 0, monotone physics, batch/numpy agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtfuse import degrade
from rtfuse.cli import main
from rtfuse.color import rgb_to_gray
from rtfuse.degrade import CLASSES, COMPOSITES, DEGRADATIONS, degrade_batch, degrade_pair, parse_spec
from rtfuse.errors import RtfuseError
from rtfuse.imageio import read_image, to_float01

ALL_KINDS = [*DEGRADATIONS, *COMPOSITES]


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A small street-like scene: bright sky above a horizon, textured ground, a warm bright lamp."""
    rng = np.random.default_rng(7)
    h, w = 96, 128
    yy, xx = np.mgrid[:h, :w] / np.array([h, w]).reshape(2, 1, 1)
    sky = yy < 0.4
    texture = 0.5 + 0.25 * np.sin(xx * 40) * np.sin(yy * 25) + 0.05 * rng.standard_normal((h, w))
    base = np.where(sky, 0.85 - 0.2 * yy, texture * (0.4 + 0.4 * yy))
    vis = np.stack([base * 0.95, base, base * 1.05], axis=-1)
    vis[60:80, 20:40] = (0.8, 0.2, 0.1)
    vis[30:36, 90:96] = 1.0
    ir = 0.3 + 0.3 * texture * (~sky)
    ir[55:85, 70:90] = 0.95  # a warm target
    return np.clip(vis, 0, 1).astype(np.float32), np.clip(ir, 0, 1).astype(np.float32)


def _contrast(img: np.ndarray) -> float:
    """Mean absolute horizontal+vertical gradient of the luminance: detail that haze/blur remove."""
    y = rgb_to_gray(img) if img.ndim == 3 else img
    return float(np.abs(np.diff(y, axis=0)).mean() + np.abs(np.diff(y, axis=1)).mean())


def _column_stripes(ir_d: np.ndarray, ir: np.ndarray) -> float:
    return float((ir_d - ir).mean(axis=0).std())


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_determinism_identity_dtype_range(pair, kind):
    vis, ir = pair
    a = degrade_pair(vis, ir, [(kind, 0.7)], seed=3)
    b = degrade_pair(vis, ir, [(kind, 0.7)], seed=3)
    c = degrade_pair(vis, ir, [(kind, 0.7)], seed=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not (np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1]))
    for out, src in zip(a, pair):
        assert out.dtype == np.float32 and out.shape == src.shape
        assert out.min() >= 0.0 and out.max() <= 1.0
    zero = degrade_pair(vis, ir, [(kind, 0.0)], seed=3)
    assert np.array_equal(zero[0], vis) and np.array_equal(zero[1], ir)
    # The distance to the clean pair grows with severity, whatever the kind.
    dist = [float(np.abs(degrade_pair(vis, ir, [(kind, s)], seed=3)[0] - vis).mean()) for s in (0.2, 0.5, 0.9)]
    assert dist[0] < dist[1] < dist[2]


def test_uint8_and_float64_round_trip(pair):
    vis, ir = pair
    vis8, ir8 = np.round(vis * 255).astype(np.uint8), np.round(ir * 255).astype(np.uint8)
    v, i = degrade_pair(vis8, ir8, "haze:0.5", seed=1)
    assert v.dtype == np.uint8 and i.dtype == np.uint8 and v.shape == vis8.shape
    assert np.array_equal(degrade_pair(vis8, ir8, "haze:0")[0], vis8)
    v64, _ = degrade_pair(vis.astype(np.float64), ir.astype(np.float64), "noise:0.5", seed=1)
    assert v64.dtype == np.float64


@pytest.mark.parametrize(
    ("spec_kind", "statistic", "direction"),
    [
        ("haze", lambda v, i, v0, i0: _contrast(v), "down"),
        ("haze", lambda v, i, v0, i0: _contrast(i), "down"),
        ("low_light", lambda v, i, v0, i0: float(v.mean()), "down"),
        ("overexposure", lambda v, i, v0, i0: float((rgb_to_gray(v) > 0.98).mean()), "up"),
        ("rain", lambda v, i, v0, i0: float(np.abs(np.diff(rgb_to_gray(v) - rgb_to_gray(v0), axis=1)).mean()), "up"),
        ("noise", lambda v, i, v0, i0: float(np.abs(v - v0).std()), "up"),
        ("noise", lambda v, i, v0, i0: _column_stripes(i, i0), "up"),
        ("noise", lambda v, i, v0, i0: float(i.std()), "down"),
        ("blur", lambda v, i, v0, i0: _contrast(v), "down"),
    ],
)
def test_severity_monotone_statistic(pair, spec_kind, statistic, direction):
    vis, ir = pair
    values = [statistic(*degrade_pair(vis, ir, [(spec_kind, s)], seed=5), vis, ir) for s in (0.0, 0.3, 0.6, 0.9)]
    ordered = values if direction == "up" else values[::-1]
    assert all(a < b for a, b in zip(ordered, ordered[1:])), values


def test_haze_spares_infrared_and_clears_near_field(pair):
    vis, ir = pair
    v, i = degrade_pair(vis, ir, "haze:0.8", seed=2)
    assert _contrast(i) / _contrast(ir) > 2.0 * _contrast(v) / _contrast(vis)
    near, far = slice(80, 96), slice(40, 56)  # ground rows below and near the horizon
    change = np.abs(v - vis).mean(axis=(1, 2))
    assert change[near].mean() < change[far].mean()


def test_infrared_noise_has_column_stripes(pair):
    """Column offsets of the readout make column means vary far more than per-pixel noise alone would."""
    vis, _ = pair
    flat = np.full(vis.shape[:2], 0.5, np.float32)
    _, ir_d = degrade_pair(vis, flat, "noise:0.8", seed=1)
    diff = ir_d - flat
    assert diff.mean(axis=0).std() > 5 * diff.std() / np.sqrt(diff.shape[0])


def test_visible_only_kinds_leave_infrared_untouched(pair):
    vis, ir = pair
    for kind in ("low_light", "overexposure"):
        assert np.array_equal(degrade_pair(vis, ir, [(kind, 0.8)], seed=0)[1], ir)


def test_composites_apply_components_in_physical_order(pair):
    vis, ir = pair
    assert parse_spec("night_fog:0.5") == [("haze", 0.35), ("low_light", 0.35)]
    # Order in the spec does not matter: the chain sorts it (rain -> haze -> ... -> noise).
    a = degrade_pair(vis, ir, "low_light:0.6,haze:0.5", seed=9)
    b = degrade_pair(vis, ir, "haze:0.5,low_light:0.6", seed=9)
    assert np.array_equal(a[0], b[0])
    composite = degrade_pair(vis, ir, "night_fog:0.8", seed=9)[0]
    assert composite.mean() < vis.mean() and _contrast(composite) < _contrast(vis)
    assert np.array_equal(degrade_pair(vis, ir, "", seed=9)[0], vis)


def test_registry_labels_and_class_targets():
    assert CLASSES == ("clean", "haze", "low_light", "overexposure", "rain", "noise")
    assert {d.label for d in DEGRADATIONS.values()} == set(CLASSES[1:])
    assert list(degrade.class_targets("clean")) == [1, 0, 0, 0, 0, 0]
    t = degrade.class_targets("rain:0.4,noise:0.2,blur:0.7")
    assert t[CLASSES.index("rain")] == pytest.approx(0.4) and t[CLASSES.index("noise")] == pytest.approx(0.7)
    assert t[0] == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fog:0.5", "valid kinds: rain, haze"),
        ("haze:1.5", "must be in [0, 1]"),
        ("haze:-0.1", "must be in [0, 1]"),
        ("haze:nan", "must be in [0, 1]"),
        ("haze", "KIND:SEVERITY"),
        ("haze:lots", "not a number"),
    ],
)
def test_parse_spec_errors(text, message):
    with pytest.raises(RtfuseError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(text)


def test_parse_spec_accepts_spaces_and_clean():
    assert parse_spec(" haze:0.6 , low_light:0.3 ") == [("haze", 0.6), ("low_light", 0.3)]
    assert parse_spec("clean") == []


def test_batch_matches_pair_statistically(pair):
    """degrade_batch and degrade_pair share the kernels but draw different random streams, so the
    deterministic part agrees and noise statistics agree within sampling error."""
    vis, ir = pair
    b = 6
    v = torch.from_numpy(vis).permute(2, 0, 1)[None].repeat(b, 1, 1, 1)
    i = torch.from_numpy(ir)[None, None].repeat(b, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    for kind in ("haze", "low_light", "overexposure", "noise", "rain", "blur"):
        vb, ib = degrade_batch(v, i, [kind] * b, torch.full((b,), 0.6), gen)
        batch_mean = vb.mean(dim=(1, 2, 3)).numpy()
        pair_mean = np.array([degrade_pair(vis, ir, [(kind, 0.6)], seed=s)[0].mean() for s in range(b)])
        spread = max(batch_mean.std(), pair_mean.std(), 0.005)
        assert abs(batch_mean.mean() - pair_mean.mean()) < 4 * spread, kind
        pair_contrast = np.mean([_contrast(degrade_pair(vis, ir, [(kind, 0.6)], seed=s)[1]) for s in range(b)])
        batch_contrast = np.mean([_contrast(x[0].numpy()) for x in ib])
        assert batch_contrast == pytest.approx(pair_contrast, rel=0.15), kind


def test_batch_mixed_kinds_clean_and_inputs_untouched(pair):
    vis, ir = pair
    v = torch.from_numpy(vis).permute(2, 0, 1)[None].repeat(4, 1, 1, 1)
    i = torch.from_numpy(ir)[None, None].repeat(4, 1, 1, 1)
    before = v.clone()
    kinds = ["clean", "haze", "rainy_night", "low_light"]
    out_v, out_i = degrade_batch(v, i, kinds, [0.9, 0.7, 0.7, 0.0], torch.Generator().manual_seed(1))
    assert torch.equal(v, before)
    assert torch.equal(out_v[0], v[0]) and torch.equal(out_v[3], v[3])
    assert not torch.equal(out_v[1], v[1]) and not torch.equal(out_v[2], v[2])
    assert out_v.dtype == torch.float32 and 0.0 <= float(out_v.min()) and float(out_v.max()) <= 1.0
    again = degrade_batch(v, i, kinds, [0.9, 0.7, 0.7, 0.0], torch.Generator().manual_seed(1))
    assert torch.equal(again[0], out_v) and torch.equal(again[1], out_i)
    with pytest.raises(RtfuseError, match="valid kinds"):
        degrade_batch(v, i, ["smoke"] * 4, [0.5] * 4)
    with pytest.raises(RtfuseError, match=r"\[0, 1\]"):
        degrade_batch(v, i, kinds, [0.5, 0.5, 2.0, 0.5])


def test_cli_gallery_and_single_pair(shared_data, tmp_path, capsys):
    vis_path = shared_data / "roadscene" / "vi" / "FLIR_04512.jpg"
    ir_path = shared_data / "roadscene" / "ir" / "FLIR_04512.jpg"
    gallery = tmp_path / "gallery.png"
    rc = main(["degrade", "--vis", str(vis_path), "--ir", str(ir_path), "--out", str(gallery),
               "--kinds", "haze,night_fog", "--tile-width", "96"])
    assert rc == 0
    img = read_image(gallery)
    tile_h = round(read_image(vis_path).shape[0] * 96 / read_image(vis_path).shape[1])
    assert img.shape[1] == 4 * (2 * 96 + 4) + 4 and img.shape[0] > 2 * tile_h

    out_v, out_i = tmp_path / "v.png", tmp_path / "i.png"
    rc = main(["degrade", "--vis", str(vis_path), "--ir", str(ir_path), "--spec", "haze:0.6",
               "--seed", "2", "--out-vis", str(out_v), "--out-ir", str(out_i)])
    assert rc == 0
    vis, ir = read_image(vis_path), read_image(ir_path, gray=True)
    expect_v, expect_i = degrade_pair(vis, ir, "haze:0.6", seed=2)
    assert np.array_equal(read_image(out_v), expect_v)
    assert np.array_equal(read_image(out_i), expect_i)
    assert _contrast(to_float01(read_image(out_v))) < _contrast(to_float01(vis))

    assert main(["degrade", "--vis", str(vis_path), "--ir", str(ir_path), "--spec", "smog:0.5",
                 "--out-vis", str(out_v), "--out-ir", str(out_i)]) == 2
    assert "valid kinds" in capsys.readouterr().err


def test_overexposure_clips_a_share_of_the_frame_whatever_its_brightness():
    """Overexposure is defined by clipped highlights: a dark frame needs a larger gain than a bright
    one to look overexposed, and both end up with about the requested extra saturated share."""
    ramp = np.linspace(0.0, 1.0, 10000, dtype=np.float32).reshape(1, 1, 100, 100)
    dark, bright = torch.from_numpy(ramp * 0.2), torch.from_numpy(ramp * 0.9)
    share = torch.tensor([0.3])
    g_dark, g_bright = degrade.overexposure_gain(dark, share), degrade.overexposure_gain(bright, share)
    assert g_dark > 3 * g_bright >= 3.0
    for lin in (dark, bright):
        clipped = float(((lin * degrade.overexposure_gain(lin, share)) >= 1.0).float().mean())
        assert clipped == pytest.approx(0.3, abs=0.01)
    assert float(degrade.overexposure_gain(torch.ones(1, 1, 8, 8), share)) == 1.0  # never darkens
