"""`rtfuse detect`: YOLO detection node on a published fused stream."""

from __future__ import annotations

import argparse

from rtfuse import defaults

HELP = "detection node: subscribe to fused frames, run YOLO (extra 'detect'), republish detections as JSON"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connect", default=defaults.ENDPOINT, metavar="ENDPOINT",
                        help="fused stream (default %(default)s)")
    parser.add_argument("--weights", required=True, help="YOLO weights .pt (local path) or model .yaml (random init)")
    parser.add_argument("--publish", default="tcp://127.0.0.1:5556", metavar="ENDPOINT",
                        help="where detections go (default %(default)s)")
    parser.add_argument("--conf", type=float, default=0.25, help="confidence threshold")
    parser.add_argument("--device", default="cpu", help="where YOLO runs: cpu (default) or cuda")
    parser.add_argument("--topic", default=defaults.TOPIC, help="topic of the fused frames to subscribe to (default %(default)s)")
    parser.add_argument("--keys", metavar="DIR", help="CURVE key folder (subscribing and publishing)")
    parser.add_argument("--insecure", action="store_true", help="allow a non-loopback --publish without encryption")
    parser.add_argument("--frames", type=int, help="exit after N frames")


def run(args: argparse.Namespace) -> int:
    import threading

    from rtfuse.detect import DetectionNode, yolo_detector
    from rtfuse.cli._signals import signals_stop

    detector = yolo_detector(args.weights, args.conf, args.device)
    stop = threading.Event()

    def show(message: dict) -> None:
        names = ", ".join(f"{d['name']} {d['conf']:.2f}" for d in message["detections"][:8])
        print(f"frame {message.get('frame')}  {len(message['detections'])} detections  "
              f"{message['detect_s'] * 1e3:.0f} ms  {names}", flush=True)

    with DetectionNode(detector, args.connect, args.publish, topic_in=args.topic, keys=args.keys,
                       insecure=args.insecure) as node, signals_stop(stop):
        node.run(stop, args.frames, on_message=show)
    return 0
