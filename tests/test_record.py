"""Recordings: the crash-safe Matroska writer, read back by OpenCV's FFmpeg."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from rtfuse.record import CLUSTER_S, MatroskaWriter, Recorder, element


def _read(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    return frames, cap.get(cv2.CAP_PROP_FPS)


def test_ebml_sizes_mark_their_length():
    assert element(0xE7, b"\x05") == b"\xe7\x81\x05"  # size 1 in one byte: 0x80 | 1
    assert element(0xA3, bytes(200))[:3] == b"\xa3\x40\xc8"  # 200 needs two bytes: 0x4000 | 200


def test_matroska_recording_plays_back_at_its_rate_and_survives_truncation(tmp_path: Path):
    fps, n = 15.0, 40
    path = tmp_path / "r.mkv"
    writer = MatroskaWriter(path, fps, (64, 48))
    for k in range(n):
        writer.write(np.full((48, 64, 3), (k * 5, 0, 255 - k * 5), np.uint8))
    writer.close()
    frames, rate = _read(path)
    assert len(frames) == n and rate == pytest.approx(fps)
    assert abs(int(frames[7][0, 0, 2]) - 35) <= 2 and abs(int(frames[7][0, 0, 0]) - 220) <= 2  # RGB in, BGR out
    data = path.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) * 2 // 3])  # a kill in the middle of the file
    cut, _ = _read(tmp_path / "cut.mkv")
    assert n * 2 // 3 - CLUSTER_S * fps <= len(cut) < n


def test_every_written_cluster_is_on_disk_before_the_next_frame(tmp_path: Path):
    """What a kill leaves: the file as it is while the writer is still open."""
    fps = 10.0
    writer = MatroskaWriter(tmp_path / "live.mkv", fps, (32, 32))
    for k in range(35):  # three whole clusters of 10 frames written, the fourth still open
        writer.write(np.full((32, 32), k, np.uint8))
    frames, _ = _read(tmp_path / "live.mkv")
    writer.close()
    assert len(frames) == 30


def test_recorder_writes_other_containers_through_opencv(tmp_path: Path):
    recorder = Recorder(tmp_path / "r.mp4", 10.0)
    for _ in range(5):
        recorder.write(np.zeros((32, 48, 3), np.uint8))
    recorder.close()
    assert len(_read(tmp_path / "r.mp4")[0]) == 5 and recorder.frames == 5
