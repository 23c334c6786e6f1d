"""Launch files: start the nodes of a set-up (pipeline, detectors, recorders, subscribers) as one unit.

A TOML file lists nodes; each runs as a child process in its own session, so that a terminal
Ctrl-C reaches only the launcher, which then stops the nodes in a fixed order of escalation
(SIGINT, SIGTERM, SIGKILL) and is done within ``SIGKILL_AFTER_S`` plus reaping. Crashed nodes are
restarted with exponential backoff; a node that keeps failing is given up, which stops the whole
set-up unless the node is ``optional``. Exit status 2 is rtfuse's one-line user error (bad
argument, missing file, missing extra): restarting cannot fix it, so such a node is given up at once.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rtfuse.errors import RtfuseError

log = logging.getLogger(__name__)

SIGTERM_AFTER_S = 1.5
"""After SIGINT, a node gets this long to finish cleanly (an mp4 recorder finalises its file)."""
SIGKILL_AFTER_S = 2.5
"""After SIGINT, a node still running at this point is killed; keeps the whole stop under 3 s."""
USER_ERROR_EXIT = 2
"""The rtfuse CLI's exit status for an RtfuseError (and argparse's for bad arguments)."""
RESTART_POLICIES = ("on-failure", "always", "never")
_DEFAULTS_KEYS = {"restart", "max_restarts", "backoff_s", "backoff_max_s", "stable_s"}
_NODE_KEYS = _DEFAULTS_KEYS | {"name", "rtfuse", "command", "env", "cwd", "optional"}

Sink = Callable[[str, str, str], None]
"""Receives (node name, 'stdout' or 'stderr', line without newline) for each line a node writes."""


@dataclass(frozen=True)
class NodeSpec:
    """One process of a launch file and what to do when it exits."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    restart: str = "on-failure"
    max_restarts: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    stable_s: float = 30.0
    optional: bool = False

    def backoff(self, restart_number: int) -> float:
        """Delay before restart ``restart_number`` (1-based): doubles each time, capped."""
        return min(self.backoff_s * 2 ** (restart_number - 1), self.backoff_max_s)

    def wants_restart(self, returncode: int) -> bool:
        """Whether the restart policy asks for a restart after this exit status."""
        if self.restart == "never" or returncode == USER_ERROR_EXIT:
            return False
        return self.restart == "always" or returncode != 0


@dataclass(frozen=True)
class LaunchSpec:
    """A parsed launch file."""

    path: Path
    nodes: tuple[NodeSpec, ...]


def _argv(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        parts = shlex.split(value)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        parts = list(value)
    else:
        raise RtfuseError(f"{where}: expected a string or a list of strings")
    if not parts:
        raise RtfuseError(f"{where}: empty command")
    return tuple(parts)


def _env(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise RtfuseError(f"{where}: expected a table of NAME = \"value\"")
    return {str(k): str(v) for k, v in value.items()}


def _options(table: dict, where: str) -> dict:
    """Validated restart options of a [launch] or [[node]] table."""
    out: dict = {}
    if "restart" in table:
        if table["restart"] not in RESTART_POLICIES:
            raise RtfuseError(f"{where}.restart: {table['restart']!r} is not one of {', '.join(RESTART_POLICIES)}")
        out["restart"] = table["restart"]
    if "max_restarts" in table:
        if not isinstance(table["max_restarts"], int) or table["max_restarts"] < 0:
            raise RtfuseError(f"{where}.max_restarts: expected an integer >= 0")
        out["max_restarts"] = table["max_restarts"]
    for key in ("backoff_s", "backoff_max_s", "stable_s"):
        if key in table:
            if not isinstance(table[key], (int, float)) or table[key] < 0:
                raise RtfuseError(f"{where}.{key}: expected a number >= 0")
            out[key] = float(table[key])
    return out


def parse_launch(doc: dict, path: Path, python: str = sys.executable) -> LaunchSpec:
    """Turn a launch-file document into node specs; every mistake is named with its key."""
    unknown = set(doc) - {"launch", "env", "node"}
    if unknown:
        raise RtfuseError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))} (expected [launch], [env], [[node]])")
    launch = doc.get("launch", {})
    if set(launch) - _DEFAULTS_KEYS:
        raise RtfuseError(f"{path}: [launch] has unknown key(s) {', '.join(sorted(set(launch) - _DEFAULTS_KEYS))}")
    defaults = _options(launch, f"{path}: [launch]")
    common_env = _env(doc.get("env", {}), f"{path}: [env]")
    tables = doc.get("node", [])
    if not isinstance(tables, list) or not tables:
        raise RtfuseError(f"{path}: no [[node]] tables")
    nodes: list[NodeSpec] = []
    for i, table in enumerate(tables):
        where = f"{path}: node {i + 1}"
        name = table.get("name")
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise RtfuseError(f"{where}: needs a name without spaces")
        where = f"{path}: node {name!r}"
        if name in {n.name for n in nodes}:
            raise RtfuseError(f"{where}: duplicate name")
        if set(table) - _NODE_KEYS:
            raise RtfuseError(f"{where}: unknown key(s) {', '.join(sorted(set(table) - _NODE_KEYS))}")
        if ("rtfuse" in table) == ("command" in table):
            raise RtfuseError(f"{where}: give exactly one of rtfuse = \"SUBCOMMAND ARGS\" or command = \"PROGRAM ARGS\"")
        if "rtfuse" in table:
            argv = (python, "-m", "rtfuse.cli", *_argv(table["rtfuse"], f"{where}.rtfuse"))
        else:
            argv = _argv(table["command"], f"{where}.command")
        cwd = table.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise RtfuseError(f"{where}.cwd: expected a string")
        optional = table.get("optional", False)
        if not isinstance(optional, bool):
            raise RtfuseError(f"{where}.optional: expected true or false")
        nodes.append(NodeSpec(
            name=name, argv=argv, cwd=cwd, optional=optional,
            env={**common_env, **_env(table.get("env", {}), f"{where}.env")},
            **{**defaults, **_options(table, where)},
        ))
    return LaunchSpec(path, tuple(nodes))


def load_launch(path: str | Path) -> LaunchSpec:
    """Read and validate a launch file."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RtfuseError(f"{path}: no such launch file") from None
    except tomllib.TOMLDecodeError as exc:
        raise RtfuseError(f"{path}: not valid TOML ({exc})") from None
    return parse_launch(doc, path)


class _Node:
    """Run-time state of one node: its current process and its restart bookkeeping."""

    def __init__(self, spec: NodeSpec):
        self.spec = spec
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.restart_at: float | None = None
        self.given_up = False
        self.readers: list[threading.Thread] = []


def _pump(stream: IO[str], name: str, kind: str, sink: Sink) -> None:
    for line in stream:
        sink(name, kind, line.rstrip("\n"))
    stream.close()


class Launcher:
    """Supervises the nodes of a launch file until they finish, one gives up, or ``stop`` is set."""

    def __init__(self, spec: LaunchSpec, sink: Sink, poll_s: float = 0.05):
        self.spec, self.sink, self.poll_s = spec, sink, poll_s
        self.stop = threading.Event()
        self.nodes = [_Node(s) for s in spec.nodes]
        self.failed: list[str] = []

    def _start(self, node: _Node) -> None:
        spec = node.spec
        # Unbuffered so that lines arrive as they are written; no tqdm bars, whose carriage-return
        # redraws would arrive as one log line each.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", **spec.env}
        try:
            proc = subprocess.Popen(
                spec.argv, cwd=spec.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1, start_new_session=True,
            )
        except OSError as exc:
            raise RtfuseError(f"node {spec.name!r}: cannot start {spec.argv[0]!r} ({exc.strerror})") from None
        node.proc, node.started_at, node.restart_at = proc, time.monotonic(), None
        node.readers = [
            threading.Thread(target=_pump, args=(stream, spec.name, kind, self.sink), daemon=True)
            for stream, kind in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
        ]
        for t in node.readers:
            t.start()
        if node.restarts:
            log.warning("restarted %s (pid %d, restart %d/%d)", spec.name, proc.pid, node.restarts, spec.max_restarts)
        else:
            log.info("started %s (pid %d): %s", spec.name, proc.pid, shlex.join(spec.argv))

    def _finish(self, node: _Node) -> None:
        """Drain a finished node's output so that its last lines come before the verdict."""
        for t in node.readers:
            t.join(timeout=1.0)
        node.proc = None

    def _on_exit(self, node: _Node, now: float) -> None:
        spec, code = node.spec, node.proc.returncode
        ran = now - node.started_at
        self._finish(node)
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        if not spec.wants_restart(code):
            if code == 0:
                log.info("%s finished (%s after %.1f s)", spec.name, how, ran)
                return
            reason = ("a configuration error (exit status 2); restarting cannot fix it"
                      if code == USER_ERROR_EXIT else f"restart = {spec.restart!r}")
            self._give_up(node, f"{spec.name} failed with {how} after {ran:.1f} s: {reason}")
            return
        if ran >= spec.stable_s:
            node.restarts = 0
        if node.restarts >= spec.max_restarts:
            self._give_up(node, f"{spec.name} failed with {how}; giving up after {node.restarts} restart(s)")
            return
        node.restarts += 1
        delay = spec.backoff(node.restarts)
        node.restart_at = now + delay
        log.warning("%s exited with %s after %.1f s; restarting in %.1f s (%d/%d)",
                    spec.name, how, ran, delay, node.restarts, spec.max_restarts)

    def _give_up(self, node: _Node, message: str) -> None:
        node.given_up = True
        if node.spec.optional:
            log.warning("%s (optional node: the others keep running)", message)
        else:
            log.error("%s; stopping the other nodes", message)
            self.failed.append(node.spec.name)
            self.stop.set()

    def _shutdown(self) -> None:
        """SIGINT to every node's process group, SIGTERM to stragglers, then SIGKILL; reap all."""
        running = [n for n in self.nodes if n.proc is not None]
        t0 = time.monotonic()
        for sig, at in ((signal.SIGINT, 0.0), (signal.SIGTERM, SIGTERM_AFTER_S), (signal.SIGKILL, SIGKILL_AFTER_S)):
            while (alive := [n for n in running if n.proc.poll() is None]) and time.monotonic() - t0 < at:
                time.sleep(self.poll_s)
            if not alive:
                break
            if sig != signal.SIGINT:
                log.warning("%s still running after %.1f s: %s", ", ".join(n.spec.name for n in alive),
                            time.monotonic() - t0, sig.name)
            for n in alive:
                try:
                    os.killpg(n.proc.pid, sig)
                except ProcessLookupError:
                    pass
        for n in running:
            code = n.proc.wait()
            self._finish(n)
            log.info("stopped %s (exit status %d)", n.spec.name, code)
        if running:
            log.info("all nodes stopped in %.2f s", time.monotonic() - t0)

    def run(self) -> int:
        """Start every node, supervise until done; 0 when stopped or finished cleanly, 1 when a required node gave up."""
        try:
            for node in self.nodes:
                self._start(node)
            while not self.stop.is_set():
                now = time.monotonic()
                for node in self.nodes:
                    if node.proc is not None and node.proc.poll() is not None:
                        self._on_exit(node, now)
                    elif node.restart_at is not None and now >= node.restart_at and not self.stop.is_set():
                        self._start(node)
                if all(n.proc is None and n.restart_at is None for n in self.nodes):
                    break
                self.stop.wait(self.poll_s)
        finally:
            self._shutdown()
        return 1 if self.failed else 0
