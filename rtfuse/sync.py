"""Pairing visible and infrared frames by time.

``ApproximateTimePairer`` follows ROS message_filters' ApproximateTime policy for two streams:
frames are matched in order, each frame is used at most once, a pair is only emitted once no
later frame could be a closer partner (using a lower bound on the inter-frame interval, like
``setInterMessageLowerBound``, and in live mode the clock: a frame not yet grabbed is newer than
now), and frames without a partner within ``tolerance`` are dropped and counted by reason.

It is pure bookkeeping with no threads or clocks of its own; ``LiveSync`` wraps it for capture
threads and keeps only the newest pair, so nothing queues behind a slow stage.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

from rtfuse.capture import STREAMS, Frame, StreamEnd
from rtfuse.errors import RtfuseError


@dataclass(frozen=True)
class Pair:
    vis: Frame
    ir: Frame
    emitted: float  # monotonic time sync released the pair

    @property
    def stamp(self) -> float:
        """Glass time of the pair: the earlier grab, so latency is never under-reported."""
        return min(self.vis.stamp, self.ir.stamp)


class ApproximateTimePairer:
    """Two-stream approximate-time matcher on a chosen time key (grab stamp or media time)."""

    def __init__(
        self,
        tolerance: float,
        min_interval: dict[str, float] | None = None,
        max_queue: int = 32,
        key: str = "stamp",
        drops: Counter[str] | None = None,
    ):
        if tolerance <= 0:
            raise RtfuseError(f"sync tolerance must be positive, got {tolerance}")
        self.tolerance = tolerance
        self.min_interval = {s: 0.0 for s in STREAMS} | (min_interval or {})
        self.max_queue = max_queue
        self.key = key
        self.queues: dict[str, deque[Frame]] = {s: deque() for s in STREAMS}
        self.ended: set[str] = set()
        self.drops: Counter[str] = drops if drops is not None else Counter()
        self.waiting_on: str | None = None
        self.release_at: float | None = None  # live: clock time at which the waiting pair is decided

    def _t(self, f: Frame) -> float:
        return f.stamp if self.key == "stamp" else f.media_time

    def push(self, frame: Frame) -> None:
        q = self.queues[frame.stream]
        q.append(frame)
        if len(q) > self.max_queue:
            q.popleft()
            self.drops[f"queue_full_{frame.stream}"] += 1

    def end(self, stream: str) -> None:
        self.ended.add(stream)

    @property
    def done(self) -> bool:
        """No pair can come any more: a stream ended and its queue is empty."""
        return any(s in self.ended and not self.queues[s] for s in STREAMS)

    def wanted(self) -> str | None:
        """The stream whose next frame is needed to make progress (replay pulls this one)."""
        for s in STREAMS:
            if not self.queues[s] and s not in self.ended:
                return s
        return self.waiting_on

    def _drop(self, stream: str) -> None:
        self.queues[stream].popleft()
        self.drops[f"unmatched_{stream}"] += 1

    def pairs(self, now: float | None = None) -> list[tuple[Frame, Frame]]:
        """Every pair that can be decided now; ``now`` (live mode) bounds unseen frames' stamps."""
        out: list[tuple[Frame, Frame]] = []
        self.waiting_on, self.release_at = None, None
        while True:
            qv, qi = self.queues["vis"], self.queues["ir"]
            if not qv or not qi:
                for s, other in (("vis", "ir"), ("ir", "vis")):
                    if not self.queues[s] and s in self.ended:
                        while self.queues[other]:
                            self._drop(other)
                return out
            tv, ti = self._t(qv[0]), self._t(qi[0])
            if tv < ti - self.tolerance:
                self._drop("vis")
                continue
            if ti < tv - self.tolerance:
                self._drop("ir")
                continue
            early, late = ("vis", "ir") if tv <= ti else ("ir", "vis")
            qe = self.queues[early]
            te, tl = self._t(qe[0]), self._t(self.queues[late][0])
            gap = tl - te
            if len(qe) > 1:
                if abs(self._t(qe[1]) - tl) < gap:
                    self._drop(early)
                    continue
            elif early not in self.ended:
                bound = te + self.min_interval[early]
                if now is not None:
                    bound = max(bound, now)
                if bound - tl < gap:
                    self.waiting_on = early
                    self.release_at = tl + gap if now is not None else None
                    return out
            v, i = qv.popleft(), qi.popleft()
            out.append((v, i))


class LatestSlot:
    """Holds the newest pair for the processing loop; an overwritten pair counts as a drop."""

    def __init__(self, drops: Counter[str]):
        self._cond = threading.Condition()
        self._pair: Pair | None = None
        self._drops = drops

    def put(self, pair: Pair) -> None:
        with self._cond:
            if self._pair is not None:
                self._drops["stale"] += 1
            self._pair = pair
            self._cond.notify()

    def take(self, timeout: float) -> Pair | None:
        with self._cond:
            if self._pair is None:
                self._cond.wait(timeout)
            pair, self._pair = self._pair, None
            return pair


class LiveSync:
    """Thread-safe front of the pairer for live mode: capture threads push, the loop takes newest."""

    def __init__(self, pairer: ApproximateTimePairer):
        self.pairer = pairer
        self.slot = LatestSlot(pairer.drops)
        self._lock = threading.Lock()
        self.errors: list[RtfuseError] = []

    def __call__(self, item: Frame | StreamEnd) -> None:
        """The ``emit`` callback of both capture threads."""
        with self._lock:
            if isinstance(item, StreamEnd):
                self.pairer.end(item.stream)
                if item.error is not None:
                    self.errors.append(item.error)
            else:
                self.pairer.push(item)
            self._release()

    def _release(self) -> None:
        now = time.monotonic()
        for v, i in self.pairer.pairs(now):
            self.slot.put(Pair(v, i, now))

    def take(self, timeout: float = 0.1) -> Pair | None:
        """Newest pair, or None after ``timeout``; a pair waiting on the clock is released here."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._release()
                release_at = self.pairer.release_at
            now = time.monotonic()
            wait = deadline - now if release_at is None else min(deadline, release_at) - now
            pair = self.slot.take(max(wait, 0.0))
            if pair is not None or time.monotonic() >= deadline:
                return pair

    @property
    def done(self) -> bool:
        with self._lock:
            return self.pairer.done or bool(self.errors)
