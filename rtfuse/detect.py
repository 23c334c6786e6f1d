"""Detection node: subscribe to fused frames, detect objects, republish detections as JSON.

The detector is any callable ``frame (H,W,3) uint8 RGB -> list[Detection]``; ``yolo_detector``
builds one from Ultralytics YOLO (optional extra ``detect``, AGPL-3.0). Weights are a local path
(``.pt``) or a model yaml (random initialisation, for tests); nothing is downloaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtfuse.errors import RtfuseError
from rtfuse.publish import Publisher, StreamEnded, Subscriber

log = logging.getLogger(__name__)

DEFAULT_OUT = "tcp://127.0.0.1:5556"
EXTRA_MISSING = (
    "rtfuse detect needs the 'detect' extra (Ultralytics YOLO, AGPL-3.0), which is not installed: "
    "in a checkout `.venv/bin/pip install -e '.[detect]'`, else `pip install 'rtfuse[detect]'`"
)


@dataclass(frozen=True)
class Detection:
    cls: int
    name: str
    conf: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the received frame


Detector = Callable[[np.ndarray], list[Detection]]


def yolo_detector(weights: str | Path, conf: float = 0.25, device: str = "cpu") -> Detector:
    """A Detector backed by Ultralytics YOLO; refuses to download missing weights."""
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise RtfuseError(EXTRA_MISSING) from exc
    weights = str(weights)
    if not weights.endswith((".yaml", ".yml")) and not Path(weights).is_file():
        raise RtfuseError(f"{weights}: weights file not found (rtfuse never downloads weights; give a local path)")
    model = YOLO(weights)

    def detect(frame: np.ndarray) -> list[Detection]:
        bgr = np.ascontiguousarray(frame[..., ::-1]) if frame.ndim == 3 else frame
        result = model.predict(bgr, conf=conf, device=device, verbose=False)[0]
        boxes = result.boxes
        xyxy = boxes.xyxy.cpu().numpy()
        scores = boxes.conf.cpu().numpy()
        classes = boxes.cls.cpu().numpy().astype(int)
        return [
            Detection(int(c), str(result.names.get(int(c), c)), float(s), tuple(float(v) for v in b))
            for b, s, c in zip(xyxy, scores, classes)
        ]

    return detect


def detection_message(header: dict, detections: list[Detection], detect_s: float) -> dict[str, Any]:
    """The JSON a node republishes: the source frame's identity and timing plus the detections."""
    keep = ("frame", "grab", "wall", "label", "plan", "shape")
    return {
        **{k: header[k] for k in keep if k in header},
        "source_topic": header.get("topic"),
        "detect_s": detect_s,
        "detections": [{**asdict(d), "box": list(d.box)} for d in detections],
    }


class DetectionNode:
    """Newest-frame detection loop between a Subscriber and a Publisher."""

    def __init__(
        self,
        detector: Detector,
        connect: str,
        publish: str = DEFAULT_OUT,
        topic_in: str = "fused",
        topic_out: str = "detections",
        keys: str | Path | None = None,
        insecure: bool = False,
    ):
        self.detector = detector
        self.subscriber = Subscriber(connect, topic_in, keys=keys)
        try:
            self.publisher = Publisher(publish, topic_out, keys=keys, insecure=insecure)
        except Exception:
            self.subscriber.close()
            raise
        self.processed = 0

    def step(self, timeout: float = 0.5) -> dict[str, Any] | None:
        """Detect on the newest frame (if one arrives within ``timeout``) and republish.

        Raises ``StreamEnded`` when the fused stream ended.
        """
        got = self.subscriber.recv(timeout=timeout, newest=True)
        if got is None or got[0] is None:
            return None
        frame, header = got
        t0 = time.perf_counter()
        detections = self.detector(frame)
        message = detection_message(header, detections, time.perf_counter() - t0)
        self.publisher.send_header(message)
        self.processed += 1
        return message

    def run(self, stop: threading.Event, frames: int | None = None,
            on_message: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Detect until ``stop``, ``frames`` processed, or the fused stream ends."""
        while not stop.is_set() and (frames is None or self.processed < frames):
            try:
                message = self.step()
            except StreamEnded as end:
                log.info("%s", end)
                return
            if message is not None and on_message is not None:
                on_message(message)

    def close(self) -> None:
        self.subscriber.close()
        self.publisher.close()

    def __enter__(self) -> DetectionNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
