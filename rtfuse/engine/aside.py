"""Compiled by default, without the wait: build the compiled engine aside while the eager one runs.

``EngineAside`` starts ``rtfuse export`` in its own process (its own session: a Ctrl-C of the run
does not stop it) writing into the engine cache, and loads the result on a thread once its sidecar
(written last) appears. The run fuses on the eager engine meanwhile and switches on the next frame:
no frame is lost or repeated. Because the build is a separate process it finishes even when the run
ends first (``make run`` is shorter than a build), so the next run is compiled from its first
frame. A lock file keeps two runs from building the same engine.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rtfuse.engine.artifact import artifact_paths
from rtfuse.engine.backends import Engine

log = logging.getLogger(__name__)

BACKEND = "aoti"  # what "auto" compiles to: the fastest engine on a CPU
POLL_S = 0.5


def compiler_missing() -> str | None:
    """Why an aoti engine cannot be built here (no C++ compiler), or None."""
    if any(shutil.which(cc) for cc in ("c++", "g++", "clang++")):
        return None
    return "no C++ compiler (c++, g++ or clang++) on PATH"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EngineAside:
    """One engine (one frame size) built by a separate process and loaded when ready."""

    def __init__(self, artifact: Path, export_args: list[str], load: Callable[[Path], Engine]):
        self.artifact, self.export_args, self._load = artifact, export_args, load
        built, self.sidecar = artifact_paths(artifact, BACKEND)
        self.lock = built.with_name(built.name + ".building")
        self.engine: Engine | None = None
        self.error: str | None = None
        self.pid: int | None = None
        self._proc: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run, name="engine-aside", daemon=True)

    @property
    def cached(self) -> bool:
        return self.sidecar.is_file()

    def start(self) -> None:
        if not self.cached:
            self._spawn_unless_building()
        self._thread.start()

    def tidy(self) -> None:
        """A cached engine whose build outlived its run left its lock and log: remove them."""
        text = self.lock.read_text().strip() if self.lock.is_file() else ""
        if self.cached and not (text.isdigit() and _alive(int(text))):
            self.lock.unlink(missing_ok=True)
            self.lock.with_suffix(".log").unlink(missing_ok=True)

    def _spawn_unless_building(self) -> None:
        self.artifact.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            text = self.lock.read_text().strip()
            if text.isdigit() and _alive(int(text)):
                self.pid = int(text)  # another run builds it: wait for that one
                return
            self.lock.unlink(missing_ok=True)  # a build that died: start again
            fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        log_path = self.lock.with_suffix(".log")
        with open(log_path, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "rtfuse.cli", "export", "--backend", BACKEND, *self.export_args,
                 "-o", str(self.artifact)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        os.write(fd, str(proc.pid).encode())
        os.close(fd)
        self.pid = proc.pid
        self._proc = proc

    def _run(self) -> None:
        try:
            while not self.cached:
                if self._failed() or (self._proc is None and self.pid is not None and not _alive(self.pid)):
                    if not self.cached:
                        log_path = self.lock.with_suffix(".log")
                        tail = log_path.read_text().strip().splitlines()[-1:] if log_path.is_file() else []
                        self.error = f"the {BACKEND} build failed ({tail[0] if tail else 'no output'}; log: {log_path})"
                        return
                time.sleep(POLL_S)
            engine = self._load(self.artifact)
            if self._proc is not None:  # ours: it exits right after the sidecar; its lock and log go
                self._proc.wait(timeout=60)
                self.lock.unlink(missing_ok=True)
                self.lock.with_suffix(".log").unlink(missing_ok=True)
            self.engine = engine  # published last: whoever switches to it finds the build tidied
        except Exception as exc:  # reported by the caller, which stays on the eager engine
            self.error = f"the {BACKEND} engine could not be loaded: {exc}"

    def _failed(self) -> bool:
        """Our build process ended without writing the engine (polling also reaps it)."""
        return self._proc is not None and self._proc.poll() is not None and not self.cached
