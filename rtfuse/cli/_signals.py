"""Signal handling of the long-running commands (a helper module, not a subcommand)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("rtfuse")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; what docker stop, systemd and timeout send


@contextmanager
def signals_stop(stop: threading.Event) -> Iterator[threading.Event]:
    """The first SIGINT or SIGTERM asks for a clean stop (``stop`` is set); a second one interrupts
    at once (KeyboardInterrupt), and the callers' ``finally`` blocks still close what they opened.

    Yields an event that tells whether a stop signal arrived.
    """
    received = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: object) -> None:
        if received.is_set():
            raise KeyboardInterrupt
        received.set()  # before the log call: a second signal during it must abort
        stop.set()
        log.warning("stopping on %s (send it again to abort)", signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
