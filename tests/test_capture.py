"""Sources and capture threads on real files: video, frame folders, 16-bit IR, failures, synthetic."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtfuse.capture import (CaptureThread, FolderSource, Frame, FrameLost, Grab, OpenCVSource, Source, StreamEnd,
                            open_source)
from rtfuse.errors import RtfuseError
from rtfuse.imageio import list_images, write_image
from rtfuse.synthetic import SyntheticScene


def collect(stream: str, source: Source, timeout: float = 20.0, **kw) -> tuple[list[Frame], StreamEnd, CaptureThread]:
    out: queue.Queue = queue.Queue()
    thread = CaptureThread(stream, source, out.put, threading.Event(), **kw)
    thread.start()
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = out.get(timeout=timeout)
        if isinstance(item, StreamEnd):
            thread.join(timeout=2)
            return frames, item, thread
        frames.append(item)
    raise AssertionError("capture thread did not finish")


def write_video(path: Path, n: int, size=(64, 48)) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
    for k in range(n):
        w.write(np.full((size[1], size[0], 3), 10 * k, np.uint8))
    w.release()


def test_video_file_frames_are_stamped_in_order(shared_data: Path):
    src = open_source(str(shared_data / "video/m2vd/ir/0111_1716.mp4"), "ir")
    frames, end, _ = collect("ir", src, max_frames=12)
    assert end.error is None and len(frames) == 12
    assert [f.index for f in frames] == list(range(12))
    assert all(f.image.shape == (480, 640) and f.image.dtype == np.uint8 for f in frames)  # IR mp4 -> gray
    stamps = [f.stamp for f in frames]
    assert stamps == sorted(stamps) and stamps[-1] <= time.monotonic()
    assert [f.media_time for f in frames] == pytest.approx([k / 30 for k in range(12)])


def test_end_of_file_ends_the_stream_cleanly(tmp_path: Path):
    write_video(tmp_path / "short.mp4", 7)
    frames, end, thread = collect("vis", open_source(str(tmp_path / "short.mp4"), "vis"))
    assert end.error is None and len(frames) == 7 and thread.retried == 0
    assert frames[0].image.shape == (48, 64, 3)


def cut_video(path: Path, n: int, keep: float = 0.6) -> int:
    """An MJPG .avi of ``n`` noise frames cut to its first ``keep`` of bytes; returns the frames that decode.

    Its header still announces ``n`` frames (a cut .mp4 would not open at all: its index is at the end).
    """
    rng = np.random.default_rng(1)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for _ in range(n):
        w.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    w.release()
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == n
    decoded = 0
    while cap.grab():
        decoded += 1
    cap.release()
    assert 0 < decoded < n
    return decoded


def test_a_cut_video_ends_at_its_last_frame_with_the_shortfall_counted(tmp_path: Path):
    decoded = cut_video(tmp_path / "cut.avi", 20)
    src = open_source(str(tmp_path / "cut.avi"), "vis")
    frames, end, thread = collect("vis", src)
    assert end.error is None and len(frames) == decoded and thread.retried == 0  # a file is not reopened
    assert thread.drops == {"truncated_vis": 20 - decoded}
    assert src.length == 20


def test_a_corrupt_frame_file_is_skipped_and_counted_in_place(tmp_path: Path):
    for k in range(5):
        write_image(tmp_path / f"{k:03d}.png", np.full((8, 8), 40 * k, np.uint8))
    (tmp_path / "002.png").write_bytes((tmp_path / "002.png").read_bytes()[:30])
    frames, end, thread = collect("ir", open_source(str(tmp_path), "ir", fps=10))
    assert end.error is None and thread.retried == 0 and thread.drops == {"corrupt_ir": 1}
    assert [f.index for f in frames] == [0, 1, 3, 4]  # positions in the stream, the gap kept
    assert [f.media_time for f in frames] == pytest.approx([0, 0.1, 0.3, 0.4])
    assert [int(f.image[0, 0]) for f in frames] == [0, 40, 120, 160]
    src = FolderSource(list_images(tmp_path), "frames")
    src.seek(2)
    with pytest.raises(FrameLost, match="002.png: not a readable image") as lost:
        src.read()
    assert lost.value.reason == "corrupt" and lost.value.count == 1 and src.read().media_time == pytest.approx(0.1)


def test_video_files_decode_on_one_thread(tmp_path: Path):
    write_video(tmp_path / "clip.mp4", 3)
    src = open_source(str(tmp_path / "clip.mp4"), "vis")
    src.open()
    try:
        assert src._cap.get(cv2.CAP_PROP_N_THREADS) == 1
        assert src.read().image.shape == (48, 64, 3)
    finally:
        src.close()


def test_frame_folder_is_read_in_name_order(shared_data: Path):
    folder = shared_data / "llvip" / "ir"
    src = open_source(str(folder), "ir", fps=25)
    assert isinstance(src, FolderSource)
    frames, end, _ = collect("ir", src, max_frames=3)
    expected = list_images(folder)[:3]
    assert [f.media_time for f in frames] == pytest.approx([0, 0.04, 0.08])
    for f, path in zip(frames, expected):
        assert f.image.ndim == 2 and f.image.shape == (1024, 1280)  # 3-channel jpg -> gray
        assert abs(float(f.image.mean()) - float(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).mean())) < 1.0


def test_16bit_infrared_goes_through_smoothed_gain_control(tmp_path: Path):
    rng = np.random.default_rng(0)
    for k in range(6):
        img = (rng.random((40, 50)) * 3000 + 20000).astype(np.uint16)
        if k >= 3:
            img += 1500  # the scene warms up suddenly
        write_image(tmp_path / f"{k:03d}.png", img)
    frames, end, _ = collect("ir", open_source(str(tmp_path), "ir"))
    assert end.error is None and len(frames) == 6
    for f in frames:
        assert f.image.dtype == np.float32 and 0.0 <= f.image.min() and f.image.max() <= 1.0
    means = [float(f.image.mean()) for f in frames]
    assert means[3] > means[2] + 0.2  # the jump shows at first ...
    assert means[5] < means[4] < means[3]  # ... and the gain follows over several frames, not at once


class FlakySource(Source):
    """A driver that delivers ``good`` frames, then fails ``failures`` times (raising or giving no frame)."""

    finite = False
    fps = None

    def __init__(self, good: int, failures: int, mode: str = "raise"):
        self.name, self.good, self.failures, self.mode = "flaky-cam", good, failures, mode
        self.delivered = 0
        self.opens = 0

    def open(self) -> None:
        self.opens += 1

    def read(self) -> Grab | None:
        if self.delivered >= self.good and self.failures > 0:
            self.failures -= 1
            if self.mode == "raise":
                raise OSError("USB transfer error")
            return None
        self.delivered += 1
        return Grab(np.zeros((4, 4, 3), np.uint8), time.monotonic(), time.monotonic())


def test_failing_source_is_retried_with_backoff_then_named_in_the_error():
    src = FlakySource(good=3, failures=100)
    t0 = time.monotonic()
    frames, end, thread = collect("vis", src, retries=3, backoff_s=0.05)
    elapsed = time.monotonic() - t0
    assert len(frames) == 3
    assert isinstance(end.error, RtfuseError)
    assert "vis source 'flaky-cam' failed after 3 retries" in str(end.error) and "USB transfer error" in str(end.error)
    assert thread.retried == 4 and src.opens == 4  # first open + 3 reopens
    assert elapsed >= 0.05 + 0.1 + 0.2  # exponential backoff between attempts


def test_source_that_recovers_keeps_streaming():
    src = FlakySource(good=2, failures=2, mode="none")
    out: queue.Queue = queue.Queue()
    stop = threading.Event()
    thread = CaptureThread("ir", src, out.put, stop, retries=3, backoff_s=0.01, max_frames=6)
    thread.start()
    thread.join(timeout=5)
    items = [out.get_nowait() for _ in range(out.qsize())]
    assert [f.index for f in items[:-1]] == list(range(6))
    assert isinstance(items[-1], StreamEnd) and items[-1].error is None and thread.retried == 2


def test_unknown_source_specs_are_refused(tmp_path: Path):
    with pytest.raises(RtfuseError, match="not a camera"):
        open_source(str(tmp_path / "missing.mp4"), "vis")
    with pytest.raises(RtfuseError, match="both `vis` and `ir`"):
        open_source("synthetic", "vis")
    with pytest.raises(RtfuseError, match="no images"):
        open_source(str(tmp_path), "vis")
    (tmp_path / "garbage.mp4").write_bytes(b"not a video")
    src = open_source(str(tmp_path / "garbage.mp4"), "vis")
    with pytest.raises(RtfuseError, match="cannot open"):
        src.open()


def test_missing_camera_gives_a_clear_error():
    src = open_source("cam7", "vis")
    assert isinstance(src, OpenCVSource) and not src.finite
    with pytest.raises(RtfuseError, match="cam7: cannot open"):
        src.open()


def test_synthetic_scene_is_deterministic_moving_and_warm():
    a, b = SyntheticScene(161, 97, seed=3), SyntheticScene(161, 97, seed=3)
    vis0, ir0 = a.render(0)
    assert vis0.shape == (97, 161, 3) and ir0.shape == (97, 161) and vis0.dtype == ir0.dtype == np.uint8
    for k in (0, 25):
        assert all(np.array_equal(x, y) for x, y in zip(a.render(k), b.render(k)))
    assert not np.array_equal(ir0, a.render(25)[1])  # targets move
    assert not np.array_equal(ir0, SyntheticScene(161, 97, seed=4).render(0)[1])
    assert np.percentile(ir0, 99.5) > 200  # warm targets glow in infrared
    vis16, ir16 = SyntheticScene(64, 48, ir_bits=16).render(0)
    assert ir16.dtype == np.uint16 and ir16.min() >= 20000


def test_synthetic_degradations_change_the_visible_image():
    pytest.importorskip("rtfuse.degrade", reason="rtfuse.degrade not available")
    clean = SyntheticScene(96, 64, seed=1).render(5)
    hazy = SyntheticScene(96, 64, seed=1, degrade="haze:0.8").render(5)
    assert hazy[0].shape == clean[0].shape
    assert float(np.abs(hazy[0].astype(int) - clean[0]).mean()) > 5
    with pytest.raises(RtfuseError, match="unknown degradation"):
        SyntheticScene(32, 32, degrade="smoke:0.5")
