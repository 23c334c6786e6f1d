"""Output paths checked before any work starts.

A command that can only fail when it writes its result (minutes later, after the work) or that
would write over its own inputs says so at once instead. The check proves the place writable with
a probe file and leaves nothing behind: folders it had to create for the probe are removed again.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from rtfuse.errors import RtfuseError


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _probe(folder: Path) -> None:
    """Create and remove a file in ``folder`` (and the missing folders above it, removed too)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    created = []
    try:
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".rtfuse-probe-"):
            pass
    finally:
        for path in reversed(created):
            path.rmdir()


def check_output(path: str | Path, inputs: Iterable[str | Path] = (), folder: bool = False) -> Path:
    """``path`` if an output can be written there (a file, or a ``folder`` of outputs) without
    touching any of ``inputs``; an error naming the path and the reason otherwise."""
    out = Path(path)
    resolved = out.resolve()
    for source in inputs:
        if _inside(resolved, Path(source).resolve()):
            raise RtfuseError(f"{out}: is, or lies inside, the input {source}; write the output elsewhere")
    for ancestor in out.absolute().parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise RtfuseError(f"{out}: cannot write here ({ancestor} is a file, not a folder)")
            break
    try:
        if folder:
            if out.exists() and not out.is_dir():
                raise RtfuseError(f"{out}: exists and is not a folder")
            _probe(out)
        elif out.is_dir():
            raise RtfuseError(f"{out}: is a folder, not a file")
        elif out.exists():
            if not os.access(out, os.W_OK):
                raise RtfuseError(f"{out}: cannot write here (no write permission)")
        else:
            _probe(out.parent)
        return out
    except OSError as exc:
        raise RtfuseError(f"{out}: cannot write here ({exc.strerror or exc})") from None


def check_outputs(*paths: str | Path | None, inputs: Iterable[str | Path] = ()) -> None:
    """``check_output`` for each file output a command was given (None: the option was not set)."""
    for path in paths:
        if path is not None:
            check_output(path, inputs)
