"""Checkpoints and the `rtfuse fuse` / `rtfuse info` commands on real files."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from rtfuse.checkpoint import load_checkpoint, save_checkpoint
from rtfuse.errors import RtfuseError
from rtfuse.fuser import Fuser, default_weights_path
from rtfuse.imageio import read_image, write_image
from rtfuse.model import create_model


def rtfuse(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtfuse.cli", *args], capture_output=True, text=True, timeout=300)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("rt")
    path = save_checkpoint(tmp_path / "m.pt", model, {"data": "unit test", "trained": False})
    loaded, meta = load_checkpoint(path)
    assert meta["data"] == "unit test" and "date" in meta and "command" in meta
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    fused_a = Fuser(model.eval(), trained=False)(np.full((16, 16, 3), 100, np.uint8), np.full((16, 16), 50, np.uint8))
    fused_b = Fuser.from_checkpoint(path)(np.full((16, 16, 3), 100, np.uint8), np.full((16, 16), 50, np.uint8))
    assert np.array_equal(fused_a, fused_b)


def test_truncated_checkpoint_is_one_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", create_model("rt"))
    data = path.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(RtfuseError, match=r"truncated\.pt: not a readable checkpoint"):
        load_checkpoint(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(RtfuseError, match="junk.pt"):
        load_checkpoint(junk)
    with pytest.raises(RtfuseError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_mismatched_checkpoint_is_one_clear_error(tmp_path):
    model = create_model("rt")
    path = save_checkpoint(tmp_path / "m.pt", model)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["fused_head.conv.weight"] = torch.zeros(3, 3, 1, 1)
    del payload["state_dict"]["pkdm.blend_bias"]
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(RtfuseError, match=r"bad\.pt: checkpoint does not match model 'rt'.*missing.*shape"):
        load_checkpoint(tmp_path / "bad.pt")


def test_cli_reports_corrupt_checkpoint_in_one_line(tmp_path):
    (tmp_path / "c.pt").write_bytes(b"\x00" * 100)
    write_image(tmp_path / "v.png", np.zeros((8, 8, 3), np.uint8))
    write_image(tmp_path / "i.png", np.zeros((8, 8), np.uint8))
    r = rtfuse("fuse", "--vis", str(tmp_path / "v.png"), "--ir", str(tmp_path / "i.png"), "-o", str(tmp_path / "o.png"),
               "--checkpoint", str(tmp_path / "c.pt"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "c.pt" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_info_prints_params_and_gmacs():
    r = rtfuse("info", "--model", "rt", "--height", "480", "--width", "640")
    assert r.returncode == 0, r.stderr
    assert "GMAC per frame" in r.stdout and "parameters" in r.stdout


def test_fuse_real_tno_pair(shared_data, tmp_path):
    tno = shared_data / "tno"
    out = tmp_path / "fused.png"
    r = rtfuse("fuse", "--vis", str(tno / "vi" / "05.png"), "--ir", str(tno / "ir" / "05.png"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    fused, vis = read_image(out), read_image(tno / "vi" / "05.png")
    assert fused.shape == vis.shape and fused.dtype == np.uint8
    assert default_weights_path() is not None, "the package ships trained default weights"
    assert "UNTRAINED" not in r.stderr


def test_untrained_model_says_so(caplog):
    Fuser(create_model("rt"), trained=False, source="test")
    assert "UNTRAINED" in caplog.text


def test_packaged_weights_are_trained_and_small():
    path = default_weights_path()
    assert path is not None and path.stat().st_size <= 5 * 1024 * 1024
    model, meta = load_checkpoint(path)
    assert meta["trained"] and meta["stage"] == 2 and model.cfg.name == "rt"


def test_fuse_folders_reports_bad_and_missing(shared_data, tmp_path):
    tno = shared_data / "tno"
    vis_dir, ir_dir = tmp_path / "vi", tmp_path / "ir"
    vis_dir.mkdir()
    ir_dir.mkdir()
    for name in ("01.png", "02.png"):
        shutil.copy(tno / "vi" / name, vis_dir / name)
        shutil.copy(tno / "ir" / name, ir_dir / name)
    (vis_dir / "03.png").write_bytes(b"corrupt")
    (ir_dir / "03.png").write_bytes(b"corrupt")
    shutil.copy(tno / "vi" / "04.png", vis_dir / "04.png")  # no infrared partner
    out = tmp_path / "out"
    r = rtfuse("fuse", "--vis", str(vis_dir), "--ir", str(ir_dir), "-o", str(out))
    assert r.returncode == 1
    assert sorted(p.name for p in out.iterdir()) == ["01.png", "02.png"]
    assert "fused 2 of 3" in r.stdout and "03.png" in r.stdout and "no infrared partner" in r.stdout


def test_fuse_size_mismatch_names_both_sizes_and_flag(tmp_path):
    write_image(tmp_path / "v.png", np.zeros((20, 30, 3), np.uint8))
    write_image(tmp_path / "i.png", np.zeros((10, 16), np.uint8))
    args = ["fuse", "--vis", str(tmp_path / "v.png"), "--ir", str(tmp_path / "i.png"), "-o", str(tmp_path / "o.png")]
    r = rtfuse(*args)
    assert r.returncode == 2 and "30x20" in r.stderr and "16x10" in r.stderr and "--resize" in r.stderr
    assert rtfuse(*args, "--resize").returncode == 0
    assert read_image(tmp_path / "o.png").shape == (20, 30, 3)


def test_half_precision_checkpoint_loads_into_float32(tmp_path):
    torch.manual_seed(1)
    model = create_model("rt")
    full = save_checkpoint(tmp_path / "f.pt", model)
    half = save_checkpoint(tmp_path / "h.pt", model, dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_checkpoint(half)
    for k, v in model.state_dict().items():
        got = loaded.state_dict()[k]
        assert got.dtype == v.dtype
        if v.is_floating_point():
            torch.testing.assert_close(got, v, atol=1e-3, rtol=1e-3)


def test_fuse_plans_again_where_the_scene_changes(tmp_path):
    """Like `rtfuse run`: a sequence of one scene is planned once, a folder of unrelated images per image."""
    rng = np.random.default_rng(0)
    scenes = [rng.integers(0, 255, (48, 64), dtype=np.uint8) for _ in range(3)]
    for sub in ("vi", "ir"):
        (tmp_path / sub).mkdir()
    names = {"a1": 0, "a2": 0, "a3": 0, "b1": 1, "c1": 2}  # three frames of one scene, then two others
    for name, k in names.items():
        write_image(tmp_path / "vi" / f"{name}.png", np.repeat(scenes[k][..., None], 3, 2))
        write_image(tmp_path / "ir" / f"{name}.png", 255 - scenes[k])
    r = rtfuse("fuse", "--vis", str(tmp_path / "vi"), "--ir", str(tmp_path / "ir"), "-o", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "fused 5 of 5 pairs" in r.stdout and "(3 expert plans" in r.stdout
    r = rtfuse("fuse", "--vis", str(tmp_path / "vi"), "--ir", str(tmp_path / "ir"), "-o", str(tmp_path / "out"),
               "--plan-per-image")
    assert "(5 expert plans" in r.stdout
