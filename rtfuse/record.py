"""Recording the fused stream: a crash-safe Matroska writer and the recorder thread.

An ``.mp4`` (and any file OpenCV's writer finalises) is playable only once closed: its index is
written last, and the writer keeps the last few hundred kilobytes in a buffer that a kill loses.
``.mkv`` recordings are written here instead, as Motion-JPEG in Matroska with no index at all: the
segment has an unknown size and each cluster (at most ``CLUSTER_S`` of frames) is written whole,
flushed and synced before the next one starts, so after SIGKILL or a power cut everything up to
the last cluster plays. Matroska is specified by IETF RFC 9559; only the elements a player needs
are written.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from rtfuse.errors import RtfuseError

log = logging.getLogger(__name__)

CLUSTER_S = 1.0  # frames that a kill can lose, at most
JPEG_QUALITY = 90
CRASH_SAFE_SUFFIXES = (".mkv",)

# Matroska element IDs (RFC 9559), their encoded bytes
_EBML, _DOCTYPE, _DOCTYPE_VERSION, _DOCTYPE_READ_VERSION = 0x1A45DFA3, 0x4282, 0x4287, 0x4285
_SEGMENT, _INFO, _TIMESTAMP_SCALE, _MUXING_APP, _WRITING_APP = 0x18538067, 0x1549A966, 0x2AD7B1, 0x4D80, 0x5741
_TRACKS, _TRACK_ENTRY, _TRACK_NUMBER, _TRACK_UID, _TRACK_TYPE = 0x1654AE6B, 0xAE, 0xD7, 0x73C5, 0x83
_CODEC_ID, _DEFAULT_DURATION, _VIDEO, _PIXEL_WIDTH, _PIXEL_HEIGHT = 0x86, 0x23E383, 0xE0, 0xB0, 0xBA
_CLUSTER, _CLUSTER_TIMESTAMP, _SIMPLE_BLOCK = 0x1F43B675, 0xE7, 0xA3
_UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def _id(element: int) -> bytes:
    return element.to_bytes((element.bit_length() + 7) // 8, "big")


def _size(n: int) -> bytes:
    """EBML variable-length size: 7 bits per byte, the length marked by the leading one."""
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return (n | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError(f"EBML size {n} too large")


def element(element_id: int, payload: bytes) -> bytes:
    return _id(element_id) + _size(len(payload)) + payload


def uint(element_id: int, value: int) -> bytes:
    return element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def text(element_id: int, value: str) -> bytes:
    return element(element_id, value.encode("ascii"))


class MatroskaWriter:
    """Motion-JPEG frames into a Matroska file that stays playable however the process ends."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], quality: int = JPEG_QUALITY):
        self.path, self.fps, self.quality = Path(path), fps, quality
        width, height = size
        self.frames = 0
        self._cluster: list[bytes] = []
        self._cluster_start = 0
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        header = element(_EBML, uint(0x4286, 1) + uint(0x42F7, 1) + uint(0x42F2, 4) + uint(0x42F3, 8)
                         + text(_DOCTYPE, "matroska") + uint(_DOCTYPE_VERSION, 4) + uint(_DOCTYPE_READ_VERSION, 2))
        info = element(_INFO, uint(_TIMESTAMP_SCALE, 1_000_000) + text(_MUXING_APP, "rtfuse") + text(_WRITING_APP, "rtfuse"))
        video = element(_VIDEO, uint(_PIXEL_WIDTH, width) + uint(_PIXEL_HEIGHT, height))
        track = element(_TRACK_ENTRY, uint(_TRACK_NUMBER, 1) + uint(_TRACK_UID, 1) + uint(_TRACK_TYPE, 1)
                        + text(_CODEC_ID, "V_MJPEG") + uint(_DEFAULT_DURATION, round(1e9 / fps)) + video)
        self._write(header + _id(_SEGMENT) + _UNKNOWN_SIZE + info + element(_TRACKS, track))

    def _ms(self, frame: int) -> int:
        return round(frame * 1000.0 / self.fps)

    def write(self, frame: np.ndarray) -> None:
        """One RGB (or grey) uint8 frame."""
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.ndim == 3 else frame,
                                [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RtfuseError(f"{self.path}: a frame could not be encoded")
        if self._cluster and self._ms(self.frames) - self._ms(self._cluster_start) >= CLUSTER_S * 1000:
            self._flush_cluster()
        if not self._cluster:
            self._cluster_start = self.frames
        offset = self._ms(self.frames) - self._ms(self._cluster_start)
        self._cluster.append(element(_SIMPLE_BLOCK, b"\x81" + offset.to_bytes(2, "big", signed=True) + b"\x80"
                                     + jpeg.tobytes()))
        self.frames += 1

    def _flush_cluster(self) -> None:
        body = uint(_CLUSTER_TIMESTAMP, self._ms(self._cluster_start)) + b"".join(self._cluster)
        self._write(element(_CLUSTER, body))
        self._cluster = []

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file.closed:
            return
        if self._cluster:
            self._flush_cluster()
        self._file.close()


class _OpenCVWriter:
    """Any other container through OpenCV (MPEG-4 Part 2): playable once closed."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            raise RtfuseError(f"{path}: cannot open for recording (use an .mkv or .mp4 path in a writable folder)")

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.ndim == 3 else frame)

    def close(self) -> None:
        self.writer.release()


class Recorder:
    """Writes frames on its own thread; ``close`` always finalises the file. ``.mkv`` survives any
    stop (``MatroskaWriter``); other containers are playable once closed."""

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps = Path(path), fps
        if self.path.suffix.lower() not in CRASH_SAFE_SUFFIXES:
            log.warning("%s: playable only once the recording is closed (a kill loses it); an .mkv path survives "
                        "any stop", self.path)
        self.frames = 0
        self._writer: MatroskaWriter | _OpenCVWriter | None = None
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=32)
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            size = (frame.shape[1], frame.shape[0])
            if self.path.suffix.lower() in CRASH_SAFE_SUFFIXES:
                try:
                    self._writer = MatroskaWriter(self.path, self.fps, size)
                except OSError as exc:
                    raise RtfuseError(f"{self.path}: cannot open for recording ({exc.strerror})") from None
            else:
                self._writer = _OpenCVWriter(self.path, self.fps, size)
            self._thread.start()
        self._queue.put(frame)

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            self._writer.write(frame)
            self.frames += 1

    def close(self) -> None:
        if self._writer is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._writer.close()
        self._writer = None
