"""Do no harm on cameras the model never saw: PKDM's physical evidence gates, the structure-keeping
fusion base, and the cross-camera suite that judges rtfuse beside the classical baselines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rtfuse.baselines import BASELINES, fuse_max, fuse_mean
from rtfuse.color import as_rgb, rgb_to_gray
from rtfuse.evaluate import degrade_sources
from rtfuse.fuser import Fuser, prepare_infrared, prepare_visible
from rtfuse.imageio import read_image, write_image
from rtfuse.model import create_model
from rtfuse.model.evidence import DARK_RAMP, HAZE_RAMP, Evidence, measure, ramp
from rtfuse.model.pkdm import STAGES, stage_gates
from rtfuse.model.pyramid import laplacian_fusion, local_mean
from rtfuse.suite import OURS, SuiteSet, dominates, score_set, suite_fusers
from rtfuse.video import read_video

CLEAN_DAYTIME = Path(__file__).parent / "data" / "clean_daytime.txt"
MAX_CLEAN_CHANGE = 2.0  # grey levels: PKDM on a clean daytime frame is (nearly) the identity


def _clean_daytime_entries() -> list[str]:
    return [line.strip() for line in CLEAN_DAYTIME.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _load(shared: Path, entry: str) -> tuple[np.ndarray, np.ndarray]:
    """A listed frame: ``SET/vi/NAME`` (its infrared partner in SET/ir) or ``video/.../vi/CLIP.mp4#INDEX``."""
    if "#" in entry:
        path, index = entry.split("#")
        vis_clip = shared / path
        ir_clip = vis_clip.parent.parent / "ir" / vis_clip.name
        k = int(index)
        vis = list(read_video(vis_clip, max_frames=k + 1))[k]
        ir = list(read_video(ir_clip, max_frames=k + 1))[k]
        return vis, rgb_to_gray(ir)
    vis_path = shared / entry
    ir_path = vis_path.parent.parent / "ir" / vis_path.name
    return read_image(vis_path), read_image(ir_path, gray=True)


# ------------------------------------------------------------------------------ evidence


def test_ramp_is_clipped_linear_both_ways():
    assert ramp(0.5, 0.55, 0.68) == 0.0 and ramp(0.7, 0.55, 0.68) == 1.0
    assert ramp(0.615, 0.55, 0.68) == pytest.approx(0.5)
    assert ramp(0.13, *DARK_RAMP) == 0.0 and ramp(0.04, *DARK_RAMP) == 1.0  # falls with brightness
    assert ramp(0.085, *DARK_RAMP) == pytest.approx(0.5)


def test_evidence_reads_the_physics_of_simple_frames():
    rng = np.random.default_rng(0)
    texture = rng.uniform(0.0, 1.0, (120, 160, 3)).astype(np.float32)
    crisp = measure(texture)
    assert crisp.gates == (0.0, 0.0, 0.0)
    veiled = measure(0.25 * texture + 0.75 * 0.9)  # I = J t + A (1 - t) with t = 0.25
    assert veiled.veil > HAZE_RAMP[1] and veiled.gates[0] == 1.0
    dark = measure(0.04 * texture)  # exposure x 0.04
    assert dark.gates[1] == 1.0 and dark.gates[0] == 0.0
    grey = measure(texture.mean(axis=2))  # a grey frame goes through the same path
    assert isinstance(grey, Evidence) and grey.gates[1] == 0.0


def test_plan_carries_the_evidence_and_gates_pkdm():
    model = create_model("rt").eval()
    with torch.no_grad():
        model.pkdm.blend_bias.fill_(4.0)  # an eager PKDM: strength ~0.98 on every stage
    rng = np.random.default_rng(1)
    texture = torch.from_numpy(rng.uniform(0, 1, (1, 3, 64, 96)).astype(np.float32))
    ir = torch.rand(1, 1, 64, 96, generator=torch.Generator().manual_seed(0))
    plan = model.plan_for(texture, ir)
    assert plan.stage_gates == (0.0, 0.0, 0.0) and plan.stage_strengths == (0.0, 0.0, 0.0)
    out = model(texture, ir, plan=plan)
    assert torch.equal(out.vis_enhanced, texture)  # gate 0: exactly the identity
    dark_plan = model.plan_for(texture * 0.04, ir)
    assert dark_plan.stage_gates[1] == 1.0 and dark_plan.stage_strengths[1] > 0.9


@pytest.mark.slow
def test_pkdm_leaves_clean_daytime_frames_untouched(shared_data: Path):
    entries = _clean_daytime_entries()
    sets = {e.split("/")[0] if not e.startswith("video/") else e.split("#")[0] for e in entries}
    assert len(entries) >= 30 and len({s.split("/")[0] for s in sets}) >= 3
    fuser = Fuser.default()
    changes = {}
    for entry in entries:
        vis, ir = _load(shared_data, entry)
        v, i = as_rgb(prepare_visible(vis)), prepare_infrared(ir)
        plan = fuser.plan_for(vis, ir)
        with torch.inference_mode():
            enhanced = fuser.model(v, i, plan=plan).vis_enhanced
        changes[entry] = float((enhanced - v).abs().mean()) * 255.0
    worst = max(changes, key=changes.get)
    assert changes[worst] <= MAX_CLEAN_CHANGE, f"{worst}: PKDM changed it by {changes[worst]:.2f} grey levels"


def test_evidence_fires_on_synthetic_degradations(shared_data: Path):
    vis = read_image(shared_data / "roadscene/vi/FLIR_00018.jpg")
    ir = read_image(shared_data / "roadscene/ir/FLIR_00018.jpg", gray=True)
    assert measure(vis / 255.0).gates == (0.0, 0.0, 0.0)
    hazy, _ = degrade_sources(vis, ir, "haze:0.9", "FLIR_00018")
    assert measure(hazy / 255.0).gates[0] > 0.5


def test_a_real_night_is_left_alone_and_a_darkened_one_is_not(shared_data: Path):
    """Night is what a night camera sees (brightening it only amplifies its noise); a night frame
    darkened further is a low-light degradation."""
    for night in ("msrs/vi/00004N.png", "llvip/vi/010001.jpg"):
        vis = read_image(shared_data / night)
        assert measure(vis / 255.0).gates[1] == 0.0, night
        darker, _ = degrade_sources(vis, rgb_to_gray(vis), "low_light:0.9", night)
        assert measure(darker / 255.0).gates[1] == 1.0, night


# ------------------------------------------------------------------------------ training gates


def test_stage_gates_follow_the_degradations_present():
    assert STAGES == ("dehaze", "lowlight", "derain")
    assert stage_gates([]) == (0.0, 0.0, 0.0)
    assert stage_gates(["haze"]) == (1.0, 0.0, 0.0)
    assert stage_gates(["haze", "low_light"]) == (1.0, 1.0, 0.0)
    assert stage_gates(["rain", "noise"]) == (0.0, 0.0, 1.0)
    assert stage_gates(["noise", "blur"]) == (0.0, 0.0, 0.0)


def test_zero_stage_gates_make_pkdm_the_identity_in_training():
    model = create_model("rt")
    vis, ir = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32)
    gates = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    out = model(vis, ir, stage_gates=gates, noisy=False)
    assert torch.equal(out.vis_enhanced[0], vis[0])


# ------------------------------------------------------------------------------ fusion base


def test_local_mean_is_the_window_mean_with_replicated_borders():
    band = torch.randn(1, 1, 9, 11, generator=torch.Generator().manual_seed(2))
    got = local_mean(band, 5)[0, 0].numpy()
    padded = np.pad(band[0, 0].numpy(), 2, mode="edge")
    want = np.mean([padded[dy : dy + 9, dx : dx + 11] for dy in range(5) for dx in range(5)], axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_energy_choice_keeps_a_structure_whole():
    """Two sources textured in opposite halves: window choice takes each half from its textured
    source, with fewer mixed-in coefficients than the per-coefficient rule."""
    g = torch.Generator().manual_seed(3)
    a, b = torch.full((1, 1, 64, 64), 0.5), torch.full((1, 1, 64, 64), 0.5)
    a[..., :32] += 0.2 * torch.rand(1, 1, 64, 32, generator=g)
    b[..., 32:] += 0.2 * torch.rand(1, 1, 64, 32, generator=g)
    b += 0.01 * torch.rand(1, 1, 64, 64, generator=g)  # faint noise everywhere in b
    windowed = laplacian_fusion(a, b, 3, "max", 5)
    single = laplacian_fusion(a, b, 3, "max", 1)
    err_w = (windowed[..., 4:28] - a[..., 4:28]).abs().mean()
    err_s = (single[..., 4:28] - a[..., 4:28]).abs().mean()
    assert err_w < err_s
    with pytest.raises(ValueError, match="odd"):
        laplacian_fusion(a, b, 3, "max", 4)
    same = torch.rand(1, 1, 40, 40, generator=g)
    torch.testing.assert_close(laplacian_fusion(same, same, 4, "max", 5), same)


# ------------------------------------------------------------------------------ suite


def test_dominance_needs_every_metric_and_a_strict_one():
    a = {"Qabf": 0.6, "VIF": 0.9, "AG": 3.0, "SD": 40.0}
    assert dominates({**a, "AG": 3.1}, a)
    assert not dominates(a, a)  # equal is not better
    assert not dominates({**a, "AG": 3.1, "SD": 39.0}, a)  # a trade-off is not domination


def _tiny_set(folder: Path, n: int = 3) -> SuiteSet:
    rng = np.random.default_rng(4)
    for k in range(n):
        base = rng.uniform(0, 255, (48, 64)).astype(np.float32)
        vis = np.clip(base[..., None] * np.array([1.0, 0.9, 0.8]), 0, 255).astype(np.uint8)
        ir = np.clip(255 - base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        write_image(folder / "vi" / f"{k}.png", vis)
        write_image(folder / "ir" / f"{k}.png", ir)
    from rtfuse.suite import _folder_pairs

    return SuiteSet("tiny", True, "random", _folder_pairs(folder))


def test_score_set_verdicts_and_sheet(tmp_path: Path):
    tiny = _tiny_set(tmp_path / "tiny")
    as_mean = score_set(tiny, {OURS: fuse_mean, **BASELINES}, sheet_dir=tmp_path / "out")
    assert as_mean.images == 3 and as_mean.below_mean == []
    assert as_mean.dominated_by == ["laplacian"] and as_mean.verdict == "dominated by laplacian"
    assert Path(as_mean.sheet).is_file() and read_image(as_mean.sheet).shape[1] == 5 * 200
    as_max = score_set(tiny, {OURS: fuse_max, **BASELINES})
    assert "max" not in as_max.dominated_by  # equal to max is not dominated by it
    with pytest.raises(Exception, match="mean"):
        score_set(tiny, {OURS: fuse_max})


def test_suite_fusers_plan_each_image():
    calls = []

    class Recording:
        def plan_for(self, v, i):
            calls.append("plan")
            return "p"

        def __call__(self, v, i, plan=None):
            calls.append(plan)
            return v

    fusers = suite_fusers(Recording())
    img = np.zeros((8, 8), np.uint8)
    fusers[OURS](img, img)
    fusers[OURS](img, img)
    assert calls == ["plan", "p", "plan", "p"] and set(BASELINES) <= set(fusers)


@pytest.mark.slow
def test_eval_suite_cli_on_the_real_sets(shared_data: Path, tmp_path: Path):
    out = tmp_path / "suite"
    proc = subprocess.run(
        [sys.executable, "-m", "rtfuse.cli", "eval", "--suite", str(shared_data), "--limit", "1", "--no-video",
         "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "suite.json").read_text())
    names = {s["name"] for s in report["sets"]}
    assert {"tno", "msrs", "llvip", "roadscene-test", "m2vd-0117_1605"} <= names
    assert report["convention"] == "cddfuse"
    held = {s["name"]: s["held_out"] for s in report["sets"]}
    assert held["tno"] and held["m2vd-0117_1605"] and not held["roadscene-test"] and not held["m2vd-0111_1716"]
    for s in report["sets"]:
        assert set(s["means"]) == {"rtfuse", "max", "mean", "laplacian"} and Path(s["sheet"]).is_file()
    assert "not dominated" in proc.stdout or "dominated by" in proc.stdout
