"""Frame sources and their capture threads.

A source is opened from what the user typed: ``cam0`` (camera index), a video file, a folder of
frames (sorted by name, LLVIP style), any URL OpenCV opens (rtsp/http), or ``synthetic``. Each
source runs in its own thread that stamps ``time.monotonic()`` at grab, converts the image to the
pipeline's convention (visible: uint8 RGB; infrared: gray, 16-bit through temporal gain control)
and hands the frame on. A failing source is reopened with exponential backoff; when the retries
are spent the thread reports an error naming the source instead of hanging the pipeline. Frames of
a file that cannot be decoded (a corrupt image in a folder, the missing tail of a cut video) are
skipped and counted as drops instead: reopening a file does not repair it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rtfuse.color import rgb_to_gray
from rtfuse.errors import ParameterError, RtfuseError
from rtfuse.imageio import TemporalAGC, list_images, read_image
from rtfuse.synthetic import SyntheticScene
from rtfuse.video import as_rgb_frame, open_capture

log = logging.getLogger(__name__)

STREAMS = ("vis", "ir")


@dataclass(frozen=True)
class Grab:
    """What a source returns for one frame: the raw image, its grab stamp and stream position."""

    image: np.ndarray
    stamp: float  # time.monotonic() right after the sensor/file delivered the frame
    media_time: float  # seconds since the start of the stream (file position, or stamp for live)


@dataclass(frozen=True)
class Frame:
    """A converted frame travelling from a capture thread to sync."""

    stream: str  # "vis" or "ir"
    index: int  # 0-based position in its stream
    image: np.ndarray  # vis: uint8 RGB (H,W,3) or gray; ir: gray uint8 or float32 in [0,1]
    stamp: float  # monotonic grab time (replay: when the pipeline released it, see pipeline.py)
    media_time: float
    capture_s: float  # grab + decode + conversion time
    prepared: Any = None  # the image as the engine's input, made by the capture thread (see CaptureThread)


@dataclass(frozen=True)
class StreamEnd:
    """Sentinel after a stream's last frame; ``error`` is set when the source gave up."""

    stream: str
    error: RtfuseError | None = None


class FrameLost(RtfuseError):
    """Frames of a file that cannot be decoded; the source has moved past them, so no retry helps.

    ``reason`` names the drop (``corrupt``: one unreadable frame; ``truncated``: frames the file's
    header announces that do not decode), ``count`` how many frames were lost.
    """

    def __init__(self, message: str, reason: str, count: int = 1):
        super().__init__(message)
        self.reason, self.count = reason, count


class Source(ABC):
    """One video stream. ``finite`` sources end (files, folders); live ones only fail.

    ``self_paced`` sources (cameras, network streams) deliver frames at their own rate; the others
    are read as fast as asked, so live mode paces them at ``fps`` to behave like a camera.
    """

    name: str
    finite: bool
    fps: float | None
    self_paced: bool = False

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> Grab | None:
        """Next frame; None means end of stream (finite) or no frame delivered (live).

        Finite sources raise ``FrameLost`` for frames they skip.
        """

    @property
    def length(self) -> int | None:
        """Frames in the stream where the source knows it (a folder, a video file's header)."""
        return None

    def seek(self, index: int) -> None:
        """Resume at frame ``index`` after a reopen; live sources have nothing to seek."""

    def close(self) -> None:
        """Release the device or file."""


class OpenCVSource(Source):
    """Camera index, video file or URL through cv2.VideoCapture."""

    def __init__(self, target: int | str, name: str, finite: bool):
        self.target, self.name, self.finite = target, name, finite
        self.self_paced = not finite
        self.fps: float | None = None
        self._cap: cv2.VideoCapture | None = None
        self._count = 0
        self._index = 0

    def open(self) -> None:
        try:
            cap = open_capture(self.target)
        except RtfuseError:
            raise RtfuseError(f"{self.name}: cannot open (no such camera, file or stream, or unsupported format)") from None
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        self._count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if self.finite else 0
        self._cap = cap

    def seek(self, index: int) -> None:
        if self.finite and self._cap is not None and index > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        self._index = index

    @property
    def length(self) -> int | None:
        return self._count if self._count > 0 else None  # OpenCV reports unknown counts as 0 or negative

    def read(self) -> Grab | None:
        assert self._cap is not None, "open() first"
        if not self._cap.grab():
            if self.finite and self._count > 0 and self._index < self._count:
                at, self._index = self._index, self._count
                raise FrameLost(f"{self.name}: decoding ends at frame {at} of {self._count} (cut or damaged file)",
                                "truncated", self._count - at)
            return None
        stamp = time.monotonic()
        ok, img = self._cap.retrieve()
        if not ok or img is None:
            if self.finite:
                self._index += 1
                raise FrameLost(f"{self.name}: frame {self._index - 1} could not be decoded", "corrupt")
            raise RtfuseError(f"{self.name}: frame {self._index} could not be decoded")
        if self.finite and self.fps:
            media = self._index / self.fps
        else:
            media = stamp
        self._index += 1
        return Grab(as_rgb_frame(img), stamp, media)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FolderSource(Source):
    """Frames from image files in name order; ``fps`` sets their media time (LLVIP replay)."""

    finite = True

    def __init__(self, files: Sequence[Path], name: str, fps: float = 30.0):
        if not files:
            raise RtfuseError(f"{name}: no images (.png/.jpg/.bmp/.tif) in folder")
        self.files, self.name, self.fps = list(files), name, fps
        self._index = 0

    def open(self) -> None:
        """Files are opened one by one in read()."""

    def seek(self, index: int) -> None:
        self._index = index

    @property
    def length(self) -> int:
        return len(self.files)

    def read(self) -> Grab | None:
        if self._index >= len(self.files):
            return None
        try:
            img = read_image(self.files[self._index])
        except RtfuseError as exc:
            self._index += 1
            raise FrameLost(str(exc), "corrupt") from None
        stamp = time.monotonic()
        grab = Grab(img, stamp, self._index / self.fps)
        self._index += 1
        return grab


class SyntheticSource(Source):
    """One modality of a SyntheticScene; in live mode the capture thread paces it at ``fps``."""

    finite = False

    def __init__(self, scene: SyntheticScene, stream: str, fps: float = 30.0):
        self.scene, self.stream, self.fps = scene, stream, fps
        self.name = f"synthetic ({stream})"
        self._index = 0

    def open(self) -> None:
        """Nothing to open: frames are computed."""

    def seek(self, index: int) -> None:
        self._index = index

    def read(self) -> Grab:
        vis, ir, stamp = self.scene.shot(self._index)
        grab = Grab(vis if self.stream == "vis" else ir, stamp, self._index / self.fps)
        self._index += 1
        return grab


_CAMERA = re.compile(r"^cam(\d+)$")


def open_source(spec: str, stream: str, fps: float | None = None, scene: SyntheticScene | None = None) -> Source:
    """Turn a command-line source spec into a Source (not yet opened)."""
    if spec == "synthetic":
        if scene is None:
            raise ParameterError("the synthetic source needs both `vis` and `ir` to be 'synthetic'")
        return SyntheticSource(scene, stream, fps or 30.0)
    m = _CAMERA.match(spec)
    if m:
        return OpenCVSource(int(m.group(1)), spec, finite=False)
    if "://" in spec:
        return OpenCVSource(spec, spec, finite=False)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(list_images(path), spec, fps or 30.0)
    if path.is_file():
        return OpenCVSource(str(path), spec, finite=True)
    raise RtfuseError(f"{spec}: not a camera (cam0), URL, video file, frame folder or 'synthetic'")


class IRConverter:
    """Infrared to one channel; 16-bit goes through temporally smoothed gain control."""

    def __init__(self) -> None:
        self.agc = TemporalAGC()

    def __call__(self, img: np.ndarray) -> np.ndarray:
        gray = rgb_to_gray(img)
        return self.agc(gray) if gray.dtype == np.uint16 else gray


def _vis_convert(img: np.ndarray) -> np.ndarray:
    """Visible stays uint8 (RGB or gray); 16-bit visible is scaled down."""
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    return img


class CaptureThread(threading.Thread):
    """Reads one source until it ends, fails for good, or ``stop`` is set.

    ``emit`` receives each Frame and finally one StreamEnd; it may block (replay back-pressure)
    but must return once ``stop`` is set. ``opened``: the caller already opened the source (so a
    wrong path fails at start-up instead of being retried). ``realtime`` paces sources that are
    not self-paced at their fps, so that files behave like cameras in live mode. ``prepare`` turns
    each image into the engine's input here, in parallel with the engine working on the previous
    pair, instead of on the hot path (its time is part of ``capture_s``). Frames a file source
    skips (``FrameLost``) are counted in ``drops`` as ``REASON_STREAM`` (the profiler's counter in
    the pipeline) and keep their place: frame indices and media times stay stream positions.
    """

    def __init__(
        self,
        stream: str,
        source: Source,
        emit: Callable[[Frame | StreamEnd], None],
        stop: threading.Event,
        realtime: bool = False,
        retries: int = 5,
        backoff_s: float = 0.1,
        max_frames: int | None = None,
        opened: bool = False,
        prepare: Callable[[np.ndarray], Any] | None = None,
        drops: Counter[str] | None = None,
    ):
        super().__init__(name=f"capture-{stream}", daemon=True)
        self.prepare = prepare
        self.stream, self.source, self.emit, self.stop = stream, source, emit, stop
        self.realtime, self.retries, self.backoff_s = realtime, retries, backoff_s
        self.max_frames = max_frames
        self._opened = opened
        self.retried = 0  # total reopen attempts, for the profile
        self.drops: Counter[str] = drops if drops is not None else Counter()
        self._convert = IRConverter() if stream == "ir" else _vis_convert

    def run(self) -> None:
        error: RtfuseError | None = None
        try:
            error = self._loop()
        except Exception as exc:  # a bug or odd frame format: end the stream with a message, not silently
            error = RtfuseError(f"{self.stream} source {self.source.name!r}: {type(exc).__name__}: {exc}")
        finally:
            self.source.close()
            self.emit(StreamEnd(self.stream, error))

    def _loop(self) -> RtfuseError | None:
        index, failures = 0, 0
        opened = self._opened
        period = 1.0 / self.source.fps if self.realtime and self.source.fps else 0.0
        next_due = time.monotonic()
        while not self.stop.is_set():
            if self.max_frames is not None and index >= self.max_frames:
                return None
            t0 = time.monotonic()
            try:
                if not opened:
                    self.source.open()
                    self.source.seek(index)
                    opened = True
                grab = self.source.read()
                if grab is None and self.source.finite:
                    return None
                if grab is None:
                    raise RtfuseError("no frame delivered")
            except FrameLost as lost:
                self.drops[f"{lost.reason}_{self.stream}"] += lost.count
                index += lost.count
                log.warning("%s source: %s; %d frame(s) skipped", self.stream, lost, lost.count)
                continue
            except Exception as exc:  # any failure of a driver/decoder is retried, then reported
                failures += 1
                self.retried += 1
                self.source.close()
                opened = False
                if failures > self.retries:
                    reason = exc if isinstance(exc, RtfuseError) else f"{type(exc).__name__}: {exc}"
                    return RtfuseError(
                        f"{self.stream} source {self.source.name!r} failed after {self.retries} retries: {reason}"
                    )
                delay = self.backoff_s * 2 ** (failures - 1)
                log.warning("%s source %r: %s; retry %d/%d in %.2f s", self.stream, self.source.name, exc,
                            failures, self.retries, delay)
                self.stop.wait(delay)
                continue
            failures = 0
            image = self._convert(grab.image)
            prepared = self.prepare(image) if self.prepare is not None else None
            frame = Frame(self.stream, index, image, grab.stamp, grab.media_time, time.monotonic() - t0, prepared)
            index += 1
            self.emit(frame)
            if period:
                next_due = max(next_due + period, time.monotonic() - period)
                self.stop.wait(max(0.0, next_due - time.monotonic()))
        return None
