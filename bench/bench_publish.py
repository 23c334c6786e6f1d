"""Publisher throughput on loopback: raw 640x480 frames/s alone, with a stalled subscriber, and
delivered to a subscriber process that reads every frame (paced at 500 fps, and flat out);
JPEG encode rate. Prints JSON.

    .venv/bin/python bench/bench_publish.py [--frames 2000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import zmq

from rtfuse.publish import Publisher, Subscriber

READER = """
import sys, time
from rtfuse.publish import Subscriber
sub = Subscriber(sys.argv[1], hwm=int(sys.argv[3]))
n, first, last = 0, None, None
print("ready", flush=True)
while True:
    got = sub.recv(timeout=2, newest=False)
    if got is None:
        break
    last = time.perf_counter()
    first = first or last
    n += 1
    if got[1]["frame"] == int(sys.argv[2]) - 1:
        break
print(n, (last or 0) - (first or 0), sub.missed, flush=True)
"""


def publish_rate(pub: Publisher, frames: list[np.ndarray], n: int, rate: float = 0.0) -> float:
    """Send n frames as fast as possible, or paced at ``rate`` frames/s; returns the achieved rate."""
    t0 = time.perf_counter()
    for k in range(n):
        if rate:
            delay = t0 + k / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        pub.send(frames[k % len(frames)], {"frame": k})
    return n / (time.perf_counter() - t0)


def to_reader(frames: list[np.ndarray], n: int, hwm: int, rate: float) -> dict[str, float]:
    """A subscriber process reading every frame: what loopback TCP + ZeroMQ deliver."""
    with Publisher("tcp://127.0.0.1:*", hwm=hwm) as pub:
        reader = subprocess.Popen([sys.executable, "-c", READER, pub.endpoint, str(n), str(hwm)],
                                  stdout=subprocess.PIPE, text=True)
        reader.stdout.readline()
        pub.wait_for_subscribers(1, 10)
        sent_rate = publish_rate(pub, frames, n, rate)
        got, seconds, missed = reader.stdout.readline().split()
        reader.wait(timeout=30)
    return {
        "target_fps": rate or "max", "hwm": hwm, "publish_fps": round(sent_rate, 1), "received": int(got),
        "received_fps": round((int(got) - 1) / float(seconds), 1) if float(seconds) > 0 else 0.0,
        "missed": int(missed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
    n = args.frames
    out: dict[str, object] = {"frame": "640x480x3 uint8 raw", "frames": n}

    with Publisher("tcp://127.0.0.1:*") as pub:
        publish_rate(pub, frames, 100)
        out["alone_fps"] = round(publish_rate(pub, frames, n), 1)

    other = zmq.Context()
    with Publisher("tcp://127.0.0.1:*") as pub, Subscriber(pub.endpoint, context=other) as _stalled:
        pub.wait_for_subscribers(1, 5)
        publish_rate(pub, frames, 100)
        out["stalled_subscriber_fps"] = round(publish_rate(pub, frames, n), 1)
    other.term()

    out["reader_paced_500fps"] = to_reader(frames, n // 2, 4, 500.0)
    out["reader_max"] = to_reader(frames, n, 4, 0.0)
    out["reader_max_hwm64"] = to_reader(frames, n, 64, 0.0)

    with Publisher("tcp://127.0.0.1:*", encoding="jpeg") as pub:
        jpeg_fps = publish_rate(pub, frames, 100)
    out["jpeg_alone_fps"] = round(jpeg_fps, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
