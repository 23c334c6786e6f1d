"""No command destroys its input or fails late on its output: outputs are checked before the work."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtfuse.errors import RtfuseError
from rtfuse.imageio import read_image, write_image
from rtfuse.paths import check_output


def test_outputs_inside_the_inputs_are_refused(tmp_path: Path):
    (tmp_path / "vi").mkdir()
    (tmp_path / "vi" / "a.png").write_bytes(b"x")
    for out in (tmp_path / "vi", tmp_path / "vi" / "fused", tmp_path / "vi" / "a.png"):
        with pytest.raises(RtfuseError, match="lies inside, the input"):
            check_output(out, inputs=(tmp_path / "vi",), folder=out.suffix == "")
    assert check_output(tmp_path / "fused", inputs=(tmp_path / "vi",), folder=True) == tmp_path / "fused"
    assert (tmp_path / "vi" / "a.png").read_bytes() == b"x"


def test_unwritable_places_are_named_with_the_reason(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RtfuseError, match="file/o.png: cannot write here .*file is a file, not a folder"):
        check_output(tmp_path / "file" / "o.png")
    with pytest.raises(RtfuseError, match="exists and is not a folder"):
        check_output(tmp_path / "file", folder=True)
    with pytest.raises(RtfuseError, match="is a folder, not a file"):
        check_output(tmp_path)
    with pytest.raises(RtfuseError, match="/proc/p.json: cannot write here"):
        check_output("/proc/p.json")
    out = check_output(tmp_path / "new" / "deep" / "o.json")  # nothing is left behind
    assert not (tmp_path / "new").exists()
    assert check_output(tmp_path / "made" / "here", folder=True) and not (tmp_path / "made").exists()
    assert check_output(tmp_path / "file") == tmp_path / "file" and (tmp_path / "file").read_text() == "x"


def _rtfuse(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtfuse.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(0)
    for sub in ("vi", "ir"):
        (root / sub).mkdir()
        write_image(root / sub / "a.png", rng.integers(0, 255, (48, 64, 3) if sub == "vi" else (48, 64), dtype=np.uint8))
    (root / "report.json").write_text('{"frames": 0}')
    (root / "blocker").write_text("a file where a folder should be")
    return root


def test_fuse_refuses_to_overwrite_its_inputs(pair: Path):
    before = read_image(pair / "vi" / "a.png")
    r = _rtfuse("fuse", "--vis", str(pair / "vi"), "--ir", str(pair / "ir"), "-o", str(pair / "vi"))
    assert r.returncode == 2 and "lies inside, the input" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert np.array_equal(read_image(pair / "vi" / "a.png"), before)


@pytest.mark.parametrize("command", [
    "fuse --vis {p}/vi/a.png --ir {p}/ir/a.png -o {bad}/o.png",
    "run --frames 3 --size 64x48 --no-publish --profile {bad}/p.json",
    "run --frames 3 --size 64x48 --no-publish --record {bad}/r.mkv",
    "profile {p}/report.json --plot {bad}/p.png",
    "eval --data {p} --baselines --csv {bad}/e.csv",
    "eval --suite {p} --out {bad}/suite",
    "degrade --vis {p}/vi/a.png --ir {p}/ir/a.png --out {bad}/g.png",
    "calib --vis {p}/vi/a.png --ir {p}/ir/a.png -o {bad}/rig.toml",
    "keys {bad}/keys",
    "export --backend aoti --height 64 --width 64 -o {bad}/engine",
    "bench --size 64x48 --json {bad}/b.json",
    "experts --data {p} --out {bad}/e.png",
])
def test_an_unwritable_output_is_refused_before_the_work_starts(pair: Path, command: str):
    t0 = time.monotonic()
    r = _rtfuse(*command.format(p=pair, bad=pair / "blocker").split())
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith("blocker is a file, not a folder)"), r.stderr
    assert "Traceback" not in r.stderr and time.monotonic() - t0 < 60
