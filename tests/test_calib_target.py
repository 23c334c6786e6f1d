"""Target-based rig calibration (issue 26): rendered rigs with known homographies, CLI end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rtfuse import calib
from rtfuse.calib.synthetic import draw_warp, render_target_rig
from rtfuse.cli import main as cli_main
from rtfuse.errors import ParameterError, RtfuseError
from rtfuse.imageio import read_image, write_image
from rtfuse.video import spread_indices

ACCEPTANCE_PX = 0.3  # issue 26: median corner error on rendered rigs


def _error(cal: calib.Calibration, rig) -> float:
    return calib.corner_error(cal.homography, rig.homography, rig.ir_size)


@pytest.mark.parametrize(
    ("kind", "inner", "ir_size", "blur", "noise"),
    [
        ("chessboard", (9, 6), (640, 512), 1.2, 4.0),
        ("chessboard", (9, 6), (320, 256), 1.5, 6.0),  # a small thermal sensor, blurrier and noisier
        ("circles", (4, 11), (640, 512), 1.2, 4.0),
    ],
)
def test_rendered_rigs_are_recovered(kind, inner, ir_size, blur, noise):
    errors = []
    for seed in range(3):
        rig = render_target_rig(np.random.default_rng(seed), kind, inner, frames=5, ir_size=ir_size, ir_blur=blur, ir_noise=noise)
        cal = calib.estimate_from_target(list(zip(rig.vis, rig.ir)), calib.Target(kind, *inner))
        assert cal.ir_size == ir_size and cal.vis_size == (640, 480)
        assert cal.stats.reprojection_px < 1.0 and cal.stats.pairs_used >= 3  # a board partly outside a frame is rejected
        errors.append(_error(cal, rig))
    assert np.median(errors) <= ACCEPTANCE_PX, errors


def test_inverted_polarity_and_ordering_are_resolved():
    """The infrared board is inverted (dark squares hot), so its detector starts from the other end."""
    rig = render_target_rig(np.random.default_rng(7), frames=2)
    target = calib.Target.parse("chessboard:9x6")
    vis = calib.target.detect(rig.vis[0], target, either_polarity=False)
    ir = calib.target.detect(rig.ir[0], target, either_polarity=True)
    assert vis is not None and ir is not None
    expected = np.linalg.inv(rig.homography)
    as_detected = np.abs(_project(ir, rig.homography) - vis).max()
    ordered = calib.target._facing_ordering(ir, vis, target, rig.ir_size)
    assert as_detected > 50  # detected from the far end: a naive fit would turn the image over
    assert np.abs(_project(vis, expected) - ordered).max() < 1.0


def _project(pts: np.ndarray, hom: np.ndarray) -> np.ndarray:
    q = np.c_[pts, np.ones(len(pts))] @ hom.T
    return q[:, :2] / q[:, 2:]


def test_frames_without_the_target_are_rejected_and_counted():
    rig = render_target_rig(np.random.default_rng(3), frames=4)
    blank = np.full_like(rig.ir[0], 60)
    pairs = [*zip(rig.vis, rig.ir), (rig.vis[0], blank)]
    cal = calib.estimate_from_target(pairs, calib.Target.parse("chessboard:9x6"))
    assert (cal.stats.pairs_used, cal.stats.pairs_total) == (4, 5)
    assert _error(cal, rig) <= ACCEPTANCE_PX


def test_no_target_anywhere_fails_with_the_reason():
    rig = render_target_rig(np.random.default_rng(3), frames=2)
    with pytest.raises(RtfuseError, match=r"chessboard:8x5 found in both frames of none of the 2 pairs"):
        calib.estimate_from_target(list(zip(rig.vis, rig.ir)), calib.Target.parse("chessboard:8x5"))


@pytest.mark.parametrize("spec", ["chessboard", "board:9x6", "chessboard:9", "chessboard:2x6"])
def test_target_spec_errors_name_the_parameter(spec):
    with pytest.raises(ParameterError, match="`target`"):
        calib.Target.parse(spec)


def test_square_board_has_four_orderings():
    assert len(calib.Target.parse("chessboard:7x7").orderings()) == 4
    assert len(calib.Target.parse("chessboard:9x6").orderings()) == 2


def test_target_calibration_file_round_trip(tmp_path: Path):
    rig = render_target_rig(np.random.default_rng(1), frames=3)
    cal = calib.estimate_from_target(list(zip(rig.vis, rig.ir)), calib.Target.parse("chessboard:9x6"))
    cal.save(tmp_path / "rig.toml")
    back = calib.Calibration.load(tmp_path / "rig.toml")
    assert back.stats == cal.stats and back.stats.method == "target chessboard:9x6"
    np.testing.assert_array_equal(back.homography, cal.homography)


def test_cli_target_calibration_on_a_real_scene(shared_data: Path, tmp_path: Path, capsys):
    """A board held in front of a real MSRS scene, both cameras, frames as two folders of PNGs."""
    scene = (read_image(shared_data / "msrs" / "vi" / "00081D.png"), read_image(shared_data / "msrs" / "ir" / "00081D.png", gray=True))
    rig = render_target_rig(np.random.default_rng(11), frames=6, scene=scene)
    for k, (v, g) in enumerate(zip(rig.vis, rig.ir)):
        write_image(tmp_path / "vis" / f"{k:03d}.png", v)
        write_image(tmp_path / "ir" / f"{k:03d}.png", g)
    out = tmp_path / "rig.toml"
    code = cli_main(["calib", "--target", "chessboard:9x6", "--vis", str(tmp_path / "vis"), "--ir", str(tmp_path / "ir"), "-o", str(out)])
    assert code == 0
    said = capsys.readouterr()
    assert "target chessboard:9x6: frames used 6/6, reprojection error" in said.out
    assert "finding the target" in said.err  # the progress bar
    assert _error(calib.Calibration.load(out), rig) <= ACCEPTANCE_PX


def test_cli_target_not_found_is_one_line_and_exit_2(tmp_path: Path, capsys):
    rng = np.random.default_rng(0)
    write_image(tmp_path / "v.png", (rng.random((120, 160, 3)) * 255).astype(np.uint8))
    write_image(tmp_path / "i.png", (rng.random((120, 160)) * 255).astype(np.uint8))
    code = cli_main(["calib", "--target", "chessboard:9x6", "--vis", str(tmp_path / "v.png"), "--ir", str(tmp_path / "i.png"),
                     "-o", str(tmp_path / "rig.toml")])
    assert code == 2 and "target calibration failed" in capsys.readouterr().err
    assert not (tmp_path / "rig.toml").exists()


def test_cli_bad_target_spec_speaks_in_flags(tmp_path: Path, capsys):
    code = cli_main(["calib", "--target", "board", "--vis", "a.png", "--ir", "b.png", "-o", str(tmp_path / "rig.toml")])
    assert code == 2 and "--target" in capsys.readouterr().err


def test_drawn_warps_stay_in_their_ranges():
    rng = np.random.default_rng(0)
    for _ in range(50):
        hom = draw_warp(rng, (640, 480))
        centre = hom @ [320, 240, 1]
        assert np.abs(centre[:2] / centre[2] - [320, 240]).max() <= 0.08 * 640 + 1
        jac = hom[:2, :2] - np.outer(centre[:2] / centre[2], hom[2, :2])
        scale = np.sqrt(abs(np.linalg.det(jac))) / centre[2]
        assert 0.85 <= scale <= 1.15


@pytest.mark.parametrize(("count", "k", "expected"), [(6, 20, [0, 1, 2, 3, 4, 5]), (6, 6, [0, 1, 2, 3, 4, 5]), (10, 3, [0, 4, 9]), (5, 1, [0])])
def test_spread_indices_take_every_frame_when_asked_for_more(count, k, expected):
    """Asking 20 frames of a 6-frame folder once gave 2 (the spacing rounded onto the same frames)."""
    assert spread_indices(count, k) == expected
