"""`rtfuse launch`: run the nodes of a launch file with prefixed logs, restarts and a clean Ctrl-C."""

from __future__ import annotations

import argparse

HELP = "start the nodes a launch file describes (pipeline, detectors, recorders, subscribers); Ctrl-C stops all"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.toml", help="launch file, e.g. launch/demo.toml")
    parser.add_argument("--check", action="store_true", help="validate the file and print the commands, start nothing")


def run(args: argparse.Namespace) -> int:
    import logging
    import shlex
    import signal
    import sys
    import threading

    from rtfuse.launch import Launcher, load_launch

    spec = load_launch(args.file)
    width = max(len("launch"), *(len(n.name) for n in spec.nodes))
    if args.check:
        for n in spec.nodes:
            flags = f"  [restart={n.restart}, max_restarts={n.max_restarts}{', optional' if n.optional else ''}]"
            print(f"{n.name:<{width}}  {shlex.join(n.argv)}{flags}")
        return 0

    lock = threading.Lock()

    def sink(name: str, kind: str, line: str) -> None:
        with lock:
            print(f"[{name:<{width}}] {line}", file=sys.stderr if kind == "stderr" else sys.stdout, flush=True)

    class _Locked(logging.StreamHandler):
        def emit(self, record: logging.LogRecord) -> None:
            with lock:
                super().emit(record)

    handler = _Locked(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[{'launch':<{width}}] %(message)s"))
    launch_log = logging.getLogger("rtfuse.launch")
    launch_log.addHandler(handler)
    launch_log.propagate = False
    if launch_log.getEffectiveLevel() > logging.INFO:
        launch_log.setLevel(logging.INFO)

    launcher = Launcher(spec, sink)

    def request_stop(signum: int, frame: object) -> None:
        launch_log.warning("%s: stopping all nodes", signal.Signals(signum).name)
        launcher.stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return launcher.run()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
