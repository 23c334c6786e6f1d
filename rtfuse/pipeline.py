"""The real-time pipeline: sources -> sync -> expert plan -> engine -> outputs -> profile.

Two capture threads feed the sync; the processing loop (the caller's thread) fuses pairs with the
current expert plan, which a side thread refreshes on scene change or every N seconds so that a
frame never waits for planning. Outputs: ZeroMQ publisher, an mp4 recorder (own thread, finalised
on every exit path) and an optional window. ``live`` mode keeps only the newest pair; ``replay``
processes every frame of file sources in order, as fast as possible or at ``rate``.

In replay a file frame has no shutter time, so its glass time is the moment the pipeline releases
it from the decode-ahead queue (decode time is still reported as the capture stage).

Faults are reported, not fatal: frames a file cannot deliver are skipped and counted as drops
(see capture.py), a stream that ends before the other is named in the profile, and subscribers
get an end-of-stream message when the run ends without an error (a stop included).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from rtfuse.calib import Calibration
from rtfuse.capture import STREAMS, CaptureThread, FolderSource, Frame, Source, StreamEnd, open_source
from rtfuse import defaults
from rtfuse.errors import ParameterError, RtfuseError
from rtfuse.imageio import check_same_size, pair_folders
from rtfuse.profiling import Profiler, save_report
from rtfuse.publish import Publisher
from rtfuse.record import Recorder
from rtfuse.sync import ApproximateTimePairer, LiveSync, Pair
from rtfuse.synthetic import SyntheticScene

if TYPE_CHECKING:
    from rtfuse.fuser import Fuser
    from rtfuse.model import Plan

log = logging.getLogger(__name__)

STOP_GRACE_S = 1.0  # how long shutdown waits for the frame in the engine


@dataclass
class PipelineConfig:
    """Everything `rtfuse run` can set; the defaults run the synthetic scene live."""

    vis: str = "synthetic"
    ir: str = "synthetic"
    mode: str | None = None  # live | replay; None: replay for files/folders, live otherwise
    fps: float | None = None  # frame rate of folder/synthetic sources (files and cameras report theirs)
    rate: float = 0.0  # replay: frames per second to process at (0: as fast as possible)
    frames: int | None = None
    duration: float | None = None
    sync_tolerance: float | None = None  # seconds; default half a frame period
    resize: bool = False
    calib: str | None = None
    checkpoint: str | None = None
    publish: str | None = defaults.ENDPOINT
    topic: str = "fused"
    encoding: str = "raw"
    jpeg_quality: int = 90
    keys: str | None = None
    insecure: bool = False
    wait_subscribers: int = 0
    wait_timeout: float = 10.0
    record: str | None = None
    show: bool = False
    profile: str | None = None
    plan_refresh_s: float = 10.0
    scene_threshold: float = 0.1
    retries: int = 5
    backoff_s: float = 0.1
    synthetic_size: tuple[int, int] = (640, 480)
    synthetic_seed: int = 0
    synthetic_degrade: str | None = None
    synthetic_ir_bits: int = 8


def _thumbnail(img: np.ndarray) -> np.ndarray:
    step = max(1, min(img.shape[0] // 96, img.shape[1] // 128))  # subsample first: 4x cheaper at 640x480
    small = np.ascontiguousarray(img[::step, ::step])
    thumb = cv2.resize(small, (32, 24), interpolation=cv2.INTER_AREA).astype(np.float32)
    return thumb.mean(axis=2) if thumb.ndim == 3 else thumb


def scene_signature(vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """A 32x24 thumbnail of both modalities in [0,1]: cheap input of the scene-change detector."""
    tv, ti = _thumbnail(vis), _thumbnail(ir)
    scale_v = 255.0 if vis.dtype == np.uint8 else 1.0
    scale_i = 255.0 if ir.dtype == np.uint8 else 1.0
    return np.stack([tv / scale_v, ti / scale_i])


def scene_changed(reference: np.ndarray, current: np.ndarray, threshold: float) -> bool:
    """Mean absolute thumbnail difference above ``threshold`` (lights, fog, a new camera view)."""
    return float(np.abs(reference - current).mean()) > threshold


class PlanManager:
    """Owns the current expert plan; the first pair plans synchronously, refreshes run aside."""

    def __init__(self, fuser: Fuser, profiler: Profiler, refresh_s: float, scene_threshold: float):
        self.fuser, self.profiler = fuser, profiler
        self.refresh_s, self.scene_threshold = refresh_s, scene_threshold
        self.plan: Plan | None = None
        self._reference: np.ndarray | None = None
        self._planned_at = 0.0
        self._request: tuple[np.ndarray, np.ndarray, np.ndarray, str] | None = None
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._worker, name="plan", daemon=True)
        self._thread.start()

    def _compute(self, vis: np.ndarray, ir: np.ndarray, signature: np.ndarray, reason: str) -> None:
        t0 = time.perf_counter()
        plan = self.fuser.plan_for(vis, ir)
        self.profiler.plan_refresh(reason, time.perf_counter() - t0)
        self.plan, self._reference, self._planned_at = plan, signature, time.monotonic()

    def current(self, vis: np.ndarray, ir: np.ndarray) -> Plan:
        """The plan to use for this pair; may queue a refresh for the side thread."""
        signature = scene_signature(vis, ir)
        if self.plan is None:
            self._compute(vis, ir, signature, "first pair")
            return self.plan
        with self._cond:
            if not self._busy:
                reason = None
                if time.monotonic() - self._planned_at >= self.refresh_s:
                    reason = "periodic"
                elif scene_changed(self._reference, signature, self.scene_threshold):
                    reason = "scene change"
                if reason:
                    self._busy = True
                    self._request = (vis, ir, signature, reason)
                    self._cond.notify()
        return self.plan

    def _worker(self) -> None:
        while True:
            with self._cond:
                while self._request is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                request, self._request = self._request, None
            try:
                self._compute(*request)
            except Exception:  # a failed refresh keeps the current plan; the stream goes on
                log.exception("expert plan refresh failed; keeping the current plan")
            finally:
                with self._cond:
                    self._busy = False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=0.2)  # a refresh in progress is abandoned (daemon thread)


class Window:
    """An OpenCV window; refuses clearly on headless OpenCV builds."""

    def __init__(self, title: str):
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise ParameterError(
                "cannot open a window (`show`): this OpenCV build has no GUI (opencv-python-headless); "
                "install opencv-python, or watch the stream from a desktop, where a subscriber can show it"
            ) from exc

    def show(self, frame: np.ndarray) -> bool:
        """Draw a frame; False once the user pressed q or Esc."""
        cv2.imshow(self.title, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.ndim == 3 else frame)
        return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(self.title)


class ReplayFeed:
    """Pull-based pairing for replay: decode ahead in the capture threads, pair every frame in order.

    When one stream ends while the other still has frames, ``ended_first`` names it and
    ``unpaired_remainder`` maps the other stream to the frames it had left (None: length unknown),
    frames no pair could use.
    """

    def __init__(self, pairer: ApproximateTimePairer, stop: threading.Event, rate: float,
                 lengths: dict[str, int | None]):
        self.pairer, self.stop, self.rate, self.lengths = pairer, stop, rate, lengths
        self.queues: dict[str, queue.Queue[Frame | StreamEnd]] = {s: queue.Queue(maxsize=4) for s in STREAMS}
        self.ended_first: str | None = None
        self.unpaired_remainder: dict[str, int | None] = {}
        self._pending: deque[Pair] = deque()
        self._released = 0
        self._t0: float | None = None

    def emitter(self, stream: str) -> Callable[[Frame | StreamEnd], None]:
        q = self.queues[stream]

        def emit(item: Frame | StreamEnd) -> None:
            while True:
                try:
                    q.put(item, timeout=0.1)
                    return
                except queue.Full:
                    if self.stop.is_set():
                        return

        return emit

    def _pace(self) -> None:
        if self.rate <= 0:
            return
        if self._t0 is None:
            self._t0 = time.monotonic()
        self.stop.wait(max(0.0, self._t0 + self._released / self.rate - time.monotonic()))

    def next(self) -> Pair | None:
        """The next pair in stream order; None at end of stream or on stop."""
        if not self._pending:
            self._pace()
        while not self._pending:
            stream = self.pairer.wanted()
            if self.pairer.done and not self.stop.is_set():
                self._note_early_end()
            if stream is None or self.pairer.done or self.stop.is_set():
                return None
            try:
                item = self.queues[stream].get(timeout=0.1)
            except queue.Empty:
                continue
            now = time.monotonic()
            if isinstance(item, StreamEnd):
                if item.error is not None:
                    raise item.error
                self.pairer.end(stream)
            else:
                self.pairer.push(dataclasses.replace(item, stamp=now))
            self._pending.extend(Pair(v, i, now) for v, i in self.pairer.pairs())
        self._released += 1
        return self._pending.popleft()

    def _note_early_end(self) -> None:
        """If one stream ended alone, look at the other's next item: a frame means it had more."""
        ended = [s for s in STREAMS if s in self.pairer.ended]
        if len(ended) != 1:
            return
        (other,) = (s for s in STREAMS if s not in self.pairer.ended)
        while not self.stop.is_set():
            try:
                item = self.queues[other].get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, StreamEnd):  # both ended together
                if item.error is not None:
                    raise item.error
                return
            length = self.lengths[other]
            self.ended_first = ended[0]
            self.unpaired_remainder = {other: None if length is None else max(0, length - item.index)}
            log.warning("the %s stream ended first; the rest of %s is not fused", ended[0], other)
            return


def _build_sources(cfg: PipelineConfig, profiler: Profiler) -> dict[str, Source]:
    specs = {"vis": cfg.vis, "ir": cfg.ir}
    if "synthetic" in specs.values():
        if cfg.vis != cfg.ir:
            raise ParameterError("the synthetic source needs both `vis` and `ir` to be 'synthetic'")
        w, h = cfg.synthetic_size
        scene = SyntheticScene(w, h, cfg.synthetic_seed, degrade=cfg.synthetic_degrade, ir_bits=cfg.synthetic_ir_bits)
        return {s: open_source("synthetic", s, cfg.fps, scene) for s in STREAMS}
    if all(Path(spec).is_dir() for spec in specs.values()):
        folders = pair_folders(cfg.vis, cfg.ir)
        for what, missing in (("infrared", folders.missing_ir), ("visible", folders.missing_vis)):
            if missing:
                log.warning("%d frames have no %s partner and are skipped: %s", len(missing), what,
                            ", ".join(p.name for p in missing[:10]) + (" ..." if len(missing) > 10 else ""))
                profiler.drops["unpaired_file"] += len(missing)
        if not folders.pairs:
            raise RtfuseError(f"{cfg.vis} and {cfg.ir}: no file names in common")
        fps = cfg.fps or 30.0
        return {
            "vis": FolderSource([v for v, _ in folders.pairs], cfg.vis, fps),
            "ir": FolderSource([i for _, i in folders.pairs], cfg.ir, fps),
        }
    return {s: open_source(spec, s, cfg.fps) for s, spec in specs.items()}


class Pipeline:
    """Runs one clip or live session; ``run()`` returns the profile report.

    ``fuser`` defaults to ``Fuser.from_checkpoint(cfg.checkpoint)`` or ``Fuser.default()``;
    ``sources`` (vis/ir Source objects) replaces the configured specs, e.g. for custom drivers.
    """

    def __init__(self, cfg: PipelineConfig, fuser: Fuser | None = None, sources: dict[str, Source] | None = None):
        if cfg.mode not in (None, "live", "replay"):
            raise RtfuseError(f"unknown mode {cfg.mode!r} (live or replay)")
        if cfg.resize and cfg.calib:
            raise ParameterError("`resize` and `calib` exclude each other")
        self.cfg = cfg
        self.profiler = Profiler()
        self.sources = sources or _build_sources(cfg, self.profiler)
        finite = all(src.finite for src in self.sources.values())
        self.mode = cfg.mode or ("replay" if finite else "live")
        if self.mode == "replay" and not finite and cfg.frames is None and cfg.duration is None:
            log.info("replay of a live source runs until stopped (set frames or duration)")
        self.stop = threading.Event()
        self.report: dict[str, Any] | None = None  # the profile of the last run, also after an error
        self._feed: ReplayFeed | None = None
        from rtfuse import fuser as fusing  # torch loads when a pipeline is built, not on import

        if fuser is None:
            fuser = fusing.Fuser.from_checkpoint(cfg.checkpoint) if cfg.checkpoint else fusing.Fuser.default()
        self.fuser = fuser
        self._outputs_lock = threading.Lock()
        self._outputs_open = False
        self._calib = Calibration.load(cfg.calib) if cfg.calib else None
        self._warp = self._calib.warper() if self._calib else None  # remap tables built once
        # Capture threads make the engine inputs while the engine works on the previous pair.
        # Infrared that the main loop still has to warp or resize is prepared there instead.
        self._preparers = {"vis": fusing.prepare_visible,
                           "ir": fusing.prepare_infrared if self._calib is None and not cfg.resize else None}

    def _align(self, vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
        """Bring infrared onto the visible grid: calibration warp, plain resize, or a clear error."""
        if self._calib is not None:
            self._calib.check_sizes((vis.shape[1], vis.shape[0]), (ir.shape[1], ir.shape[0]))
            return self._warp(ir)
        if self.cfg.resize and vis.shape[:2] != ir.shape[:2]:
            return cv2.resize(ir, (vis.shape[1], vis.shape[0]), interpolation=cv2.INTER_LINEAR)
        check_same_size(vis, ir, "streams")
        return ir

    def _start(self) -> tuple[Callable[[], Pair | None], Callable[[], bool], Callable[[], None], list[CaptureThread]]:
        """Open the sources (a wrong path fails here, not after retries) and start capturing.

        Returns ``take`` (next pair or None for now), ``finished`` (no pair will come any more),
        ``check`` (raise a source's final error) and the capture threads.
        """
        try:
            for src in self.sources.values():
                src.open()
        except Exception:
            for src in self.sources.values():
                src.close()
            raise
        fps = [src.fps for src in self.sources.values() if src.fps]
        period = 1.0 / min(fps) if fps else 1.0 / 30
        tolerance = self.cfg.sync_tolerance or period / 2
        min_interval = {s: 0.5 / src.fps if src.fps else 0.0 for s, src in self.sources.items()}
        replay = self.mode == "replay"
        pairer = ApproximateTimePairer(
            tolerance, min_interval, key="media" if replay else "stamp", drops=self.profiler.drops
        )
        if replay:
            feed = ReplayFeed(pairer, self.stop, self.cfg.rate, {s: src.length for s, src in self.sources.items()})
            self._feed = feed
            emitters = {s: feed.emitter(s) for s in STREAMS}
            take: Callable[[], Pair | None] = feed.next

            def finished() -> bool:
                return True  # feed.next only returns None at the end (or on stop)

            def check() -> None:
                """Replay raises source errors from feed.next itself."""

        else:
            live = LiveSync(pairer)
            emitters = {s: live for s in STREAMS}

            def take() -> Pair | None:
                return live.take(0.1)

            def finished() -> bool:
                return live.done

            def check() -> None:
                if live.errors:
                    raise live.errors[0]

        threads = [
            CaptureThread(
                s, self.sources[s], emitters[s], self.stop,
                realtime=not replay and not self.sources[s].self_paced,
                retries=self.cfg.retries, backoff_s=self.cfg.backoff_s,
                opened=True, prepare=self._preparers[s], drops=self.profiler.drops,
            )
            for s in STREAMS
        ]
        for t in threads:
            t.start()
        return take, finished, check, threads

    def _outputs(self) -> tuple[Publisher | None, Recorder | None, Window | None]:
        cfg = self.cfg
        publisher = recorder = window = None
        try:
            if cfg.publish:
                publisher = Publisher(cfg.publish, cfg.topic, cfg.encoding, cfg.jpeg_quality, keys=cfg.keys,
                                      insecure=cfg.insecure)
                if cfg.wait_subscribers and not publisher.wait_for_subscribers(cfg.wait_subscribers, cfg.wait_timeout):
                    raise RtfuseError(
                        f"{cfg.publish}: only {publisher.subscribers} of {cfg.wait_subscribers} subscribers "
                        f"connected within {cfg.wait_timeout:g} s"
                    )
            if cfg.record:
                src_fps = [s.fps for s in self.sources.values() if s.fps]
                recorder = Recorder(cfg.record, cfg.rate or (min(src_fps) if src_fps else 30.0))
            if cfg.show:
                window = Window("rtfuse")
        except Exception:
            if publisher is not None:
                publisher.close(end_of_stream=False)
            raise
        return publisher, recorder, window

    def run(self, on_frame: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Process until end of stream, ``frames``/``duration``, a source failure, or ``stop``.

        Frames are processed on a worker thread while this thread supervises: once ``stop`` is
        set, the frame in the engine gets ``STOP_GRACE_S`` to finish, then outputs are closed and
        the recording finalised whether or not it did (a slow engine cannot delay shutdown).
        Subscribers get the end-of-stream message unless the run failed. Returns the profile
        report (also written to ``cfg.profile`` when set).
        """
        cfg = self.cfg
        publisher = recorder = window = plans = None
        threads: list[CaptureThread] = []
        errors: list[BaseException] = []
        failed = True
        try:
            publisher, recorder, window = self._outputs()
            self._outputs_open = True
            plans = PlanManager(self.fuser, self.profiler, cfg.plan_refresh_s, cfg.scene_threshold)
            take, finished, check, threads = self._start()

            def work() -> None:
                try:
                    self._loop(take, finished, check, plans, publisher, recorder, window, on_frame)
                except BaseException as exc:  # handed to the supervising thread
                    errors.append(exc)

            worker = threading.Thread(target=work, name="process", daemon=True)
            worker.start()
            while worker.is_alive() and not self.stop.is_set():
                worker.join(0.05)
            worker.join(STOP_GRACE_S)
            if worker.is_alive():
                log.warning("a frame was still in the engine after %.1f s; shutting down without it", STOP_GRACE_S)
            if errors:
                raise errors[0]
            failed = False
        finally:
            drops = dict(self.profiler.drops)  # frames in flight at shutdown are not drops
            self.stop.set()
            with self._outputs_lock:
                self._outputs_open = False
            deadline = time.monotonic() + 0.5
            for t in threads:
                t.join(timeout=max(0.0, deadline - time.monotonic()))
            if plans is not None:
                plans.close()
            if recorder is not None:
                recorder.close()
            if window is not None:
                window.close()
            if publisher is not None:
                publisher.close(end_of_stream=not failed)
            self.profiler.drops.clear()
            self.profiler.drops.update(drops)
            log.info("pipeline stopped, outputs closed")
            self.report = self._finish_report(threads, recorder)
        return self.report

    def _finish_report(self, threads: list[CaptureThread], recorder: Recorder | None) -> dict[str, Any]:
        """The profile report of the run, also written to ``profile``: on every exit, errors included."""
        cfg = self.cfg
        self.profiler.meta = {
            "vis": cfg.vis, "ir": cfg.ir, "mode": self.mode, "publish": cfg.publish, "encoding": cfg.encoding,
            "record": cfg.record, "recorded_frames": recorder.frames if recorder else 0,
            "engine": getattr(self.fuser, "last_engine", getattr(self.fuser, "backend", type(self.fuser).__name__)),
            "engine_backend": getattr(self.fuser, "backend", None),
            "engine_switches": list(getattr(self.fuser, "switches", [])),
            "source_fps": min((src.fps for src in self.sources.values() if src.fps), default=None),
            "source_retries": sum(t.retried for t in threads),
            "ended_first": self._feed.ended_first if self._feed else None,
            "unpaired_remainder": self._feed.unpaired_remainder if self._feed else {},
        }
        report = self.profiler.report()
        if cfg.profile:
            save_report(report, cfg.profile)
        return report

    def _loop(
        self,
        take: Callable[[], Pair | None],
        finished: Callable[[], bool],
        check: Callable[[], None],
        plans: PlanManager,
        publisher: Publisher | None,
        recorder: Recorder | None,
        window: Window | None,
        on_frame: Callable[[int], None] | None,
    ) -> None:
        cfg = self.cfg
        t_start = time.monotonic()
        n = 0
        while not self.stop.is_set():
            if cfg.frames is not None and n >= cfg.frames:
                break
            if cfg.duration is not None and time.monotonic() - t_start >= cfg.duration:
                break
            pair = take()
            check()
            if pair is None:
                if finished():
                    break
                continue
            t_take = time.monotonic()
            t0 = time.perf_counter()
            vis, ir = pair.vis.image, pair.ir.image
            aligned = self._align(vis, ir)
            plan = plans.current(vis, aligned)
            t1 = time.perf_counter()
            align_s = t1 - t0  # registration + plan lookup (scene-change check)
            vis_in = vis if pair.vis.prepared is None else pair.vis.prepared
            ir_in = aligned if pair.ir.prepared is None else pair.ir.prepared  # prepared only when not aligned here
            fused = self.fuser(vis_in, ir_in, plan=plan)
            call_s = time.perf_counter() - t1
            timings = self.fuser.timings
            stages = {
                "capture": max(pair.vis.capture_s, pair.ir.capture_s),
                "sync": pair.emitted - pair.stamp,
                "queue": t_take - pair.emitted,
                "preprocess": align_s + timings.get("preprocess", 0.0),
                "inference": timings["inference"],
                "postprocess": timings.get("postprocess", 0.0),
            }
            with self._outputs_lock:  # the supervisor closes the outputs under this lock
                if not self._outputs_open:
                    return
                self.profiler.label(n, plan.label, plan.plan_id)
                t_pub = time.monotonic()
                if publisher is not None:
                    header = {
                        "frame": n, "grab": pair.stamp, "grab_vis": pair.vis.stamp, "grab_ir": pair.ir.stamp,
                        "index_vis": pair.vis.index, "index_ir": pair.ir.index, "media_time": pair.vis.media_time,
                        "stages_s": stages, "publish": t_pub, "wall": time.time(), "label": plan.label,
                        "probs": {k: float(v) for k, v in plan.probs.items()}, "plan": plan.plan_id,
                    }
                    publisher.send(fused, header)
                t_done = time.monotonic()
                stages["publish"] = t_done - t_pub
                self.profiler.add(stages, t_done - pair.stamp, t_done, call_s)
                if recorder is not None:
                    recorder.write(fused)
                if window is not None and not window.show(fused):
                    self.stop.set()
            n += 1
            if on_frame is not None:
                on_frame(n)
