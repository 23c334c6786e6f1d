"""Reading videos: the one home of decoding, for the capture threads, evaluation, calibration and
training alike. Frames come out as RGB uint8 (H,W,3), like ``rtfuse.imageio.read_image``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from rtfuse.errors import RtfuseError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")


def open_capture(target: int | str | Path) -> cv2.VideoCapture:
    """An opened ``cv2.VideoCapture`` of a camera index, file or URL; an error naming it otherwise.

    Files and URLs go through FFmpeg with one decoding thread where it opens them: FFmpeg's default
    frame threading (a thread per core) took twice the CPU per 640x480 H.264 frame here (1.3 vs
    0.64 ms) and adds threads that pre-empt the engine on a small machine.
    """
    if isinstance(target, int):
        cap = cv2.VideoCapture(target)
    else:
        cap = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        if not cap.isOpened():
            cap.release()
            cap = cv2.VideoCapture(str(target))
    if not cap.isOpened():
        cap.release()
        raise RtfuseError(f"{target}: cannot open (no such camera, file or stream, or unsupported format)")
    return cap


def as_rgb_frame(frame: np.ndarray) -> np.ndarray:
    """A decoded OpenCV frame (BGR, or grey from some cameras) as RGB (or grey as it is)."""
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else frame


def read_video(path: str | Path, max_frames: int | None = None, every: int = 1) -> Iterator[np.ndarray]:
    """Decoded frames: every ``every``-th frame, at most ``max_frames`` of them."""
    if every < 1:
        raise RtfuseError(f"frame step must be >= 1, got {every}")
    cap = open_capture(path)
    try:
        n = index = 0
        while max_frames is None or n < max_frames:
            if not cap.grab():
                break
            index += 1
            if (index - 1) % every:
                continue
            ok, frame = cap.retrieve()
            if not ok:
                break
            n += 1
            yield as_rgb_frame(frame)
    finally:
        cap.release()


def spread_indices(count: int, k: int) -> list[int]:
    """Up to ``k`` distinct indices spread evenly over ``count`` items, first and last included."""
    if k >= count:
        return list(range(count))
    return sorted({round(i * (count - 1) / max(k - 1, 1)) for i in range(k)})


def read_frames_spread(path: str | Path, k: int) -> list[np.ndarray]:
    """``k`` frames spread over a video (by seeking); an error when none can be read."""
    if not Path(path).is_file():
        raise RtfuseError(f"{path}: no such file")
    cap = open_capture(path)
    try:
        out = []
        for idx in spread_indices(max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 1), k):
            cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
            ok, frame = cap.read()
            if ok:
                out.append(as_rgb_frame(frame))
        if not out:
            raise RtfuseError(f"{path}: no frames could be read")
        return out
    finally:
        cap.release()


def list_videos(folder: Path) -> list[Path]:
    """The videos of a folder, by name."""
    if not folder.is_dir():
        raise RtfuseError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)

