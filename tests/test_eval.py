"""`rtfuse eval`: folder scoring with bad inputs, tables, CSV, plot, baselines, robustness mode,
video flicker, and `--ours` (real files, real video encode/decode)."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtfuse.baselines import fuse_laplacian, fuse_max, fuse_mean
from rtfuse.cli import main
from rtfuse.errors import RtfuseError
from rtfuse.evaluate import (
    EvalResult,
    evaluate_folder,
    evaluate_videos,
    markdown_table,
    ranks,
    summarise,
    temporal_flicker,
    write_csv,
)
from rtfuse.imageio import read_image

SMALL = ("37.png", "08.png", "05.png")  # the smallest TNO pairs
FAST = ["EN", "MI", "Qabf", "CC"]


@pytest.fixture
def dataset(shared_data: Path, tmp_path: Path) -> Path:
    """Three real TNO pairs plus every kind of bad input, and one method's fused folder."""
    tno = shared_data / "tno"
    root = tmp_path / "data"
    for sub in ("ir", "vi", "fused"):
        (root / sub).mkdir(parents=True)
    for name in SMALL:
        shutil.copy(tno / "ir" / name, root / "ir" / name)
        shutil.copy(tno / "vi" / name, root / "vi" / name)
        shutil.copy(tno / "fused" / "SeAFusion" / name, root / "fused" / name)
    shutil.copy(tno / "vi" / "01.png", root / "vi" / "lonely.png")  # no infrared partner
    (root / "ir" / "broken.png").write_bytes(b"not a png")  # unreadable
    shutil.copy(tno / "vi" / "01.png", root / "vi" / "broken.png")
    shutil.copy(tno / "ir" / "01.png", root / "ir" / "mismatch.png")  # 768x576 vs 280x280
    shutil.copy(tno / "vi" / "05.png", root / "vi" / "mismatch.png")
    shutil.copy(tno / "fused" / "SeAFusion" / "01.png", root / "fused" / "extra.png")  # no source pair
    (root / "fused" / "08.png").unlink()  # missing fused output
    return root


def test_baselines_hand_values():
    vis = np.array([[10, 200]], np.uint8)
    ir = np.array([[100, 50]], np.uint8)
    assert fuse_max(vis, ir).tolist() == [[100, 200]]
    assert fuse_mean(vis, ir).tolist() == [[55, 125]]
    rgb = np.stack([vis] * 3, axis=2)
    assert fuse_max(rgb, ir).tolist() == [[100, 200]]


def test_laplacian_baseline_reconstructs_and_keeps_stronger_detail():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 52), dtype=np.uint8)
    assert np.array_equal(fuse_laplacian(img, img), img)  # perfect reconstruction
    flat = np.full((64, 64), 128, np.uint8)
    edge = flat.copy()
    edge[:, 32:] = 228
    fused = fuse_laplacian(flat, edge).astype(float)
    # the step keeps (almost) its full height locally; the mean would halve it to 50
    assert fused[:, 32].mean() - fused[:, 31].mean() > 90


def test_cli_choices_match_the_registries():
    """The CLI takes its choices from rtfuse.defaults so that `rtfuse --help` imports neither torch nor numba."""
    from rtfuse import defaults
    from rtfuse.baselines import BASELINES
    from rtfuse.cli.eval import BASELINE_NAMES
    from rtfuse.engine import BACKENDS, EXPORTABLE, PRECISIONS
    from rtfuse.metrics import CONVENTIONS, DEFAULT_CONVENTION

    assert defaults.METRIC_CONVENTIONS == tuple(CONVENTIONS)
    assert defaults.METRIC_CONVENTION == DEFAULT_CONVENTION == "cddfuse"
    assert BASELINE_NAMES == tuple(BASELINES)
    assert (BACKENDS, EXPORTABLE, tuple(PRECISIONS)) == (defaults.BACKENDS, defaults.EXPORTABLE_BACKENDS, defaults.PRECISIONS)


def test_ranks_ties_and_nan():
    assert ranks([0.5, 0.9, 0.5, math.nan]) == [2.5, 1.0, 2.5, 4.0]


def test_markdown_marks_best_counts_and_ranks():
    result = EvalResult("matlab", ["EN", "CC"], ["a", "b"])
    result.rows = [
        {"image": "1", "method": "a", "EN": 7.0, "CC": 0.5},
        {"image": "2", "method": "a", "EN": 6.0, "CC": math.nan},
        {"image": "1", "method": "b", "EN": 5.0, "CC": 0.7},
    ]
    table = markdown_table(result)
    assert "| a | 2 | **6.5000** | 0.5000 (1) | 1.50 |" in table
    assert "| b | 1 | 5.0000 | **0.7000** | 1.50 |" in table
    s = {m.method: m for m in summarise(result)}
    assert s["a"].counts == {"EN": 2, "CC": 1}


def test_evaluate_folder_lists_bad_inputs_and_scores_the_rest(dataset: Path, tmp_path: Path):
    result = evaluate_folder(dataset, {"SeAFusion": dataset / "fused"}, {"max": fuse_max}, names=FAST, workers=2)
    bad = {(b.name, b.method): b.reason for b in result.bad}
    assert bad[("lonely.png", "sources")] == "no infrared partner"
    assert "not a readable image" in bad[("broken.png", "sources")]
    assert "768x576" in bad[("mismatch.png", "sources")]
    assert bad[("extra.png", "SeAFusion")] == "no source pair"
    assert bad[("08.png", "SeAFusion")] == "no fused output"
    counts = {s.method: s.images for s in summarise(result)}
    assert counts == {"SeAFusion": 2, "max": 3}
    # precomputed outputs score exactly as the metric API scores them
    from rtfuse.metrics import compute_metrics

    row = next(r for r in result.rows if r["method"] == "SeAFusion" and r["image"] == "37.png")
    direct = compute_metrics(read_image(dataset / "ir/37.png"), read_image(dataset / "vi/37.png"),
                             read_image(dataset / "fused/37.png"), names=FAST)
    assert {k: row[k] for k in FAST} == direct
    out = tmp_path / "scores.csv"
    write_csv(result, out)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 and rows[0]["convention"] == "cddfuse" and set(FAST) <= set(rows[0])


def test_evaluate_folder_refusals(dataset: Path):
    with pytest.raises(RtfuseError, match="nothing to score"):
        evaluate_folder(dataset)
    with pytest.raises(RtfuseError, match="not to `fused_dirs` fused elsewhere"):
        evaluate_folder(dataset, {"x": dataset / "fused"}, degrade="noise:0.5")


def test_cli_prints_table_writes_csv_and_plot(dataset: Path, tmp_path: Path, capsys):
    csv_path, png = tmp_path / "out.csv", tmp_path / "bars.png"
    rc = main(["eval", "--data", str(dataset), "--fused", f"SeAFusion={dataset / 'fused'}", "--baselines",
               "--metrics", "EN,MI,Qabf,SSIM", "--csv", str(csv_path), "--plot", str(png), "--workers", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| method | n | EN | MI | Qabf | SSIM | rank |" in out
    for name in ("SeAFusion", "max", "mean", "laplacian"):
        assert f"| {name} |" in out
    assert "excluded (5):" in out and "extra.png [SeAFusion]: no source pair" in out
    assert out.count("**") == 2 * 4  # one best per metric
    assert cv2.imread(str(png)) is not None
    assert len(list(csv.DictReader(csv_path.open()))) == 2 + 3 * 3


def test_cli_refuses_bad_arguments(dataset: Path, capsys):
    assert main(["eval", "--data", str(dataset), "--fused", "x=/nonexistent"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["eval", "--data", str(dataset), "--baseline", "max", "--metrics", "FMI"]) == 2
    assert "unknown metric 'FMI'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("rtfuse.degrade") is None, reason="rtfuse.degrade (training issue) not present")
def test_robustness_mode_scores_degraded_fusion_against_clean_sources(dataset: Path):
    clean = evaluate_folder(dataset, fusers={"max": fuse_max}, names=["MI", "Qabf"], workers=2)
    noisy = evaluate_folder(dataset, fusers={"max": fuse_max}, names=["MI", "Qabf"], degrade="noise:0.8", workers=2)
    again = evaluate_folder(dataset, fusers={"max": fuse_max}, names=["MI", "Qabf"], degrade="noise:0.8", workers=2)
    assert noisy.rows == again.rows  # seeded by image name: reproducible
    c = {s.method: s.means for s in summarise(clean)}["max"]
    n = {s.method: s.means for s in summarise(noisy)}["max"]
    assert n["MI"] < c["MI"] and n["Qabf"] < c["Qabf"]  # less of the clean information survives
    zero = evaluate_folder(dataset, fusers={"max": fuse_max}, names=["MI"], degrade="noise:0", workers=2)
    assert [r["MI"] for r in zero.rows] == [r["MI"] for r in clean.rows]


def test_temporal_flicker_hand_values():
    v = [np.full((4, 4), x, np.float32) for x in (10, 20, 20)]
    i = [np.full((4, 4), x, np.float32) for x in (50, 50, 45)]
    mean = [(a + b) / 2 for a, b in zip(v, i)]
    assert temporal_flicker(mean, v, i).flicker == 0.0  # convex combinations never flicker
    flick = [np.full((4, 4), x, np.float32) for x in (0, 30, 0)]
    r = temporal_flicker(flick, v, i)
    # steps: |30| - max(10, 0) = 20, |30| - max(0, 5) = 25
    assert r.flicker == pytest.approx(22.5) and r.fused_change == 30.0 and r.frames == 3
    with pytest.raises(RtfuseError, match="at least 2 frames"):
        temporal_flicker(flick[:1], v[:1], i[:1])


def _write_clip(path: Path, frames: list[np.ndarray]) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def test_video_mode_flags_a_flickering_clip(shared_data: Path, tmp_path: Path, capsys):
    from rtfuse.video import read_video

    m2vd = shared_data / "video" / "m2vd"
    data = tmp_path / "clips"
    for sub in ("vi", "ir"):
        (data / sub).mkdir(parents=True)
        frames = [cv2.resize(f, (160, 120), interpolation=cv2.INTER_AREA) for f in read_video(m2vd / sub / "0111_1716.mp4", 12)]
        _write_clip(data / sub / "0111_1716.mp4", frames)
    vis = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in read_video(data / "vi" / "0111_1716.mp4")]
    ir = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in read_video(data / "ir" / "0111_1716.mp4")]
    (tmp_path / "pumping").mkdir()
    pumping = [np.clip(((v.astype(int) + i) // 2) + (25 if k % 2 else -25), 0, 255).astype(np.uint8)
               for k, (v, i) in enumerate(zip(vis, ir))]
    _write_clip(tmp_path / "pumping" / "0111_1716.mp4", pumping)
    rows, bad = evaluate_videos(data, {"pumping": tmp_path / "pumping"}, {"mean": fuse_mean})
    assert bad == []
    got = {r["method"]: r for r in rows}
    assert got["mean"]["frames"] == 12
    assert got["mean"]["flicker"] < 1.0 < 10.0 < got["pumping"]["flicker"]
    assert main(["eval", "--data", str(data), "--baseline", "max", "--max-frames", "5"]) == 0
    assert "| 0111_1716 | max | 5 |" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("rtfuse.fuser") is None, reason="rtfuse.fuser (model issue) not present")
def test_cli_ours_fuses_and_scores(dataset: Path, tmp_path: Path, capsys):
    saved = tmp_path / "saved"
    rc = main(["eval", "--data", str(dataset), "--ours", "--metrics", "EN,Qabf", "--limit", "2",
               "--save-fused", str(saved), "--csv", str(tmp_path / "o.csv")])
    assert rc == 0
    assert "| rtfuse | 2 |" in capsys.readouterr().out
    fused = read_image(saved / "rtfuse" / "05.png")
    assert fused.shape[:2] == read_image(dataset / "vi" / "05.png").shape[:2]


def _script(folder: str, name: str):
    """A script of bench/ or experiments/ as a module."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_robustness_bench_scores_night_renditions_of_the_pairs(shared_data: Path, tmp_path: Path):
    """bench/robustness.py --night: the references become darkened copies (infrared as it was)."""
    bench = _script("bench", "robustness")
    tno = shared_data / "tno"
    night = bench.night_scenes(tno, tmp_path / "night", 0.6, limit=2)
    dark = bench.night_scenes(tno, tmp_path / "dark", 0.6, limit=2, ir_gain=0.5)
    names = sorted(p.name for p in (night / "vi").iterdir())
    assert len(names) == 2 and names == sorted(p.name for p in (night / "ir").iterdir())
    for name in names:
        original = Path(name).stem + ".png"
        assert read_image(night / "vi" / name).mean() < 0.8 * read_image(tno / "vi" / original).mean()
        ir = read_image(tno / "ir" / original, gray=True)
        assert np.array_equal(read_image(night / "ir" / name), ir)
        assert np.abs(read_image(dark / "ir" / name).astype(float) - 0.5 * ir).max() <= 0.5
        assert np.array_equal(read_image(dark / "vi" / name), read_image(night / "vi" / name))
    out = tmp_path / "report.json"
    assert bench.main(["--data", str(tno), "--limit", "2", "--cells", "noise:0.5", "--night", "0.6", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert list(report) == [f"{tno} (night 0.6)"]
    assert report[f"{tno} (night 0.6)"]["noise:0.5"]["max"]["n"] == 2
    with pytest.raises(SystemExit):  # a gain without the night rendition would be silently ignored
        bench.main(["--data", str(tno), "--ir-gain", "0.2"])


def test_sharpening_bench_trades_qabf_for_detail(shared_data: Path, tmp_path: Path, capsys):
    """experiments/sharpening.py: an unsharp mask leaves flat areas alone, raises AG and SF and costs Qabf;
    precomputed fusions are scored beside it and the plot is written."""
    bench = _script("experiments", "sharpening")
    flat = np.full((20, 30, 3), 77, np.uint8)
    assert np.array_equal(bench.unsharp(flat, 1.0, 2.0), flat)
    tno = shared_data / "tno"
    data, fused = tmp_path / "data", tmp_path / "fused" / "PIAFusion"
    for folder in (data / "vi", data / "ir", fused):
        folder.mkdir(parents=True)
    for name in SMALL[:2]:
        (data / "vi" / name).symlink_to(tno / "vi" / name)
        (data / "ir" / name).symlink_to(tno / "ir" / name)
        (fused / name).symlink_to(tno / "fused" / "PIAFusion" / name)
    plot = tmp_path / "sharpening.png"
    assert bench.main(["--data", str(data), "--fused-root", str(fused.parent), "--amount", "0.8", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    means = json.loads(out[: out.index("\n}") + 2])
    plain, sharp = means["rtfuse"], means["rtfuse usm 0.8"]
    assert sharp["AG"] > 1.2 * plain["AG"] and sharp["SF"] > 1.2 * plain["SF"]
    assert sharp["Qabf"] < plain["Qabf"] - 0.02
    assert means["PIAFusion"]["n"] == 2 and {"max", "mean", "laplacian"} <= set(means)
    assert cv2.imread(str(plot)).shape[1] > 600
