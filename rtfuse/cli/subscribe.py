"""`rtfuse subscribe`: watch a published fused stream."""

from __future__ import annotations

import argparse

from rtfuse import defaults
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

HELP = ("subscribe to a published stream: print one line per frame, or show it in a window; "
        "exits 0 when the publisher ends the stream")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connect", default=defaults.ENDPOINT, metavar="ENDPOINT", help="default %(default)s")
    parser.add_argument("--topic", default="fused")
    parser.add_argument("--keys", metavar="DIR",
                        help="folder with the publisher's server.key and this client's key pair")
    parser.add_argument("--key-name", default="client", help="which NAME.key_secret in --keys to use")
    parser.add_argument("--frames", type=int, help="exit after N frames")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S",
                        help="give up after S seconds without a frame")
    parser.add_argument("--all", action="store_true", help="read every frame in order instead of the newest")
    parser.add_argument("--show", action="store_true", help="show frames in a window (desktop OpenCV)")


def _line(frame: np.ndarray | None, header: dict, latency_ms: float) -> str:
    """One line per message; detection messages (no pixels) show their detection count."""
    if frame is not None:
        what = f"{frame.shape[1]}x{frame.shape[0]} {header.get('encoding')}"
    else:
        what = f"{len(header.get('detections', []))} detections"
    return (
        f"frame {header.get('frame')}  {what}  label {header.get('label') or '-'}  "
        f"plan {header.get('plan') or '-'}  glass-to-here {latency_ms:.1f} ms"
    )


def run(args: argparse.Namespace) -> int:
    import threading
    import time

    from rtfuse.errors import RtfuseError
    from rtfuse.cli._signals import signals_stop
    from rtfuse.pipeline import Window
    from rtfuse.publish import StreamEnded, Subscriber

    stop = threading.Event()
    window = Window(f"rtfuse {args.connect}") if args.show else None
    count = 0
    with Subscriber(args.connect, args.topic, keys=args.keys, key_name=args.key_name) as sub, signals_stop(stop):
        while not stop.is_set() and (args.frames is None or count < args.frames):
            deadline = time.monotonic() + args.timeout
            got = None
            try:
                while got is None and not stop.is_set() and time.monotonic() < deadline:
                    got = sub.recv(timeout=0.2, newest=not args.all)
            except StreamEnded as end:
                print(f"stream ended: the publisher at {args.connect} closed it after {end.sent} messages "
                      f"({count} received here)", flush=True)
                break
            if got is None:
                if stop.is_set():
                    break
                raise RtfuseError(
                    f"no frame from {args.connect} within {args.timeout:g} s "
                    f"(is `rtfuse run` publishing there?)"
                )
            frame, header = got
            count += 1
            if window is not None and frame is not None:
                if not window.show(frame):
                    break
            else:
                print(_line(frame, header, (time.monotonic() - header.get("grab", time.monotonic())) * 1e3), flush=True)
    if window is not None:
        window.close()
    return 0
