"""Approximate-time pairing: jitter, skipped frames, rate mismatch, live release, drops."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from rtfuse.capture import Frame, StreamEnd
from rtfuse.errors import RtfuseError
from rtfuse.sync import ApproximateTimePairer, LiveSync

PIXEL = np.zeros((1, 1), np.uint8)


def frame(stream: str, index: int, t: float) -> Frame:
    return Frame(stream, index, PIXEL, stamp=t, media_time=t, capture_s=0.0)


def arrival_order(*streams: list[Frame]) -> list[Frame]:
    return sorted((f for s in streams for f in s), key=lambda f: f.stamp)


def run_pairer(pairer: ApproximateTimePairer, frames: list[Frame]) -> list[tuple[int, int]]:
    out = []
    for f in frames:
        pairer.push(f)
        out += [(v.index, i.index) for v, i in pairer.pairs()]
    for s in ("vis", "ir"):
        pairer.end(s)
    out += [(v.index, i.index) for v, i in pairer.pairs()]
    return out


def test_jitter_and_skipped_frames_pair_correctly_and_count_drops():
    rng = np.random.default_rng(1)
    period, n = 1 / 30, 300
    jitter = lambda: float(np.clip(rng.normal(0, 0.002), -0.005, 0.005))  # noqa: E731
    vis = [frame("vis", k, k * period + jitter()) for k in range(n)]
    kept = [k for k in range(n) if k % 7 != 3]  # infrared camera skips every 7th frame
    ir = [frame("ir", j, k * period + 0.003 + jitter()) for j, k in enumerate(kept)]
    pairer = ApproximateTimePairer(tolerance=period / 2, min_interval={"vis": period / 2, "ir": period / 2})
    pairs = run_pairer(pairer, arrival_order(vis, ir))
    assert pairs == [(k, j) for j, k in enumerate(kept)]
    assert pairer.drops == {"unmatched_vis": n - len(kept)}


def test_faster_stream_pairs_with_the_closest_frame_not_the_first_within_tolerance():
    # 60 fps visible, 30 fps infrared: a naive first-within-tolerance match would take the
    # visible frame 16.7 ms early; the closest one is the simultaneous one.
    vis = [frame("vis", k, k / 60) for k in range(120)]
    ir = [frame("ir", k, k / 30 + 0.001) for k in range(60)]
    pairer = ApproximateTimePairer(tolerance=0.02)
    pairs = run_pairer(pairer, arrival_order(vis, ir))
    assert pairs == [(2 * k, k) for k in range(60)]
    assert pairer.drops == {"unmatched_vis": 60}  # every odd frame, the last one at end of stream


def test_frames_outside_tolerance_are_dropped_by_stream():
    pairer = ApproximateTimePairer(tolerance=0.005)
    frames = [frame("vis", 0, 0.0), frame("ir", 0, 0.05), frame("vis", 1, 0.1), frame("ir", 1, 0.101)]
    assert run_pairer(pairer, frames) == [(1, 1)]
    assert pairer.drops == {"unmatched_vis": 1, "unmatched_ir": 1}


def test_pair_waits_for_a_possibly_closer_frame_unless_the_interval_bound_rules_it_out():
    a = ApproximateTimePairer(tolerance=0.02)
    a.push(frame("vis", 0, 0.000))
    a.push(frame("ir", 0, 0.010))
    assert a.pairs() == [] and a.wanted() == "vis"  # next vis could be at 0.012, closer to 0.010
    a.push(frame("vis", 1, 0.033))
    assert [(v.index, i.index) for v, i in a.pairs()] == [(0, 0)]

    b = ApproximateTimePairer(tolerance=0.02, min_interval={"vis": 0.025})
    b.push(frame("vis", 0, 0.000))
    b.push(frame("ir", 0, 0.010))
    assert len(b.pairs()) == 1  # next vis is at >= 0.025: farther from 0.010 than 0.000


def test_live_clock_releases_a_waiting_pair():
    p = ApproximateTimePairer(tolerance=0.02)
    p.push(frame("vis", 0, 100.000))
    p.push(frame("ir", 0, 100.010))
    assert p.pairs(now=100.015) == [] and p.release_at == pytest.approx(100.020)
    assert len(p.pairs(now=100.021)) == 1  # a vis frame not yet grabbed is later than 100.021


def test_end_of_stream_drops_the_rest_and_reports_done():
    p = ApproximateTimePairer(tolerance=0.01)
    for k in range(3):
        p.push(frame("vis", k, k * 0.1))
    p.push(frame("ir", 0, 0.0))
    p.end("ir")
    assert len(p.pairs()) == 1
    assert p.drops == {"unmatched_vis": 2} and p.done


def test_queue_limit_drops_oldest():
    p = ApproximateTimePairer(tolerance=0.01, max_queue=4)
    for k in range(10):
        p.push(frame("vis", k, k * 0.1))
    assert len(p.queues["vis"]) == 4 and p.drops == {"queue_full_vis": 6}


def test_bad_tolerance_is_refused():
    with pytest.raises(RtfuseError, match="tolerance"):
        ApproximateTimePairer(tolerance=0)


def test_live_sync_keeps_only_the_newest_pair_and_counts_stale():
    live = LiveSync(ApproximateTimePairer(tolerance=0.01, min_interval={"vis": 0.01, "ir": 0.01}))
    t0 = time.monotonic()

    def feed(stream: str) -> None:
        for k in range(20):
            live(frame(stream, k, t0 + k * 0.02))
        live(StreamEnd(stream))

    threads = [threading.Thread(target=feed, args=(s,)) for s in ("vis", "ir")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pair = live.take(timeout=0.5)
    assert pair is not None and pair.vis.index == pair.ir.index == 19
    assert live.pairer.drops["stale"] == 19
    assert live.take(timeout=0.05) is None and live.done
