"""Output paths checked before any work starts.

A command that can only fail when it writes its result (minutes later, after the work) or that
would write over its own inputs says so at once instead. The check creates the missing parent
folders (the write would create them anyway) and proves the place writable with a probe file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from rtfuse.errors import RtfuseError


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output(path: str | Path, inputs: Iterable[str | Path] = (), folder: bool = False) -> Path:
    """``path`` if an output can be written there (a file, or a ``folder`` of outputs) without
    touching any of ``inputs``; an error naming the path and the reason otherwise."""
    out = Path(path)
    resolved = out.resolve()
    for source in inputs:
        src = Path(source).resolve()
        if _inside(resolved, src):
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
            out.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=out, prefix=".rtfuse-probe-"):
                pass
            return out
        if out.is_dir():
            raise RtfuseError(f"{out}: is a folder, not a file")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            if not os.access(out, os.W_OK):
                raise RtfuseError(f"{out}: cannot write here (no write permission)")
            return out
        with open(out, "xb"):
            pass
        out.unlink()
        return out
    except OSError as exc:
        raise RtfuseError(f"{out}: cannot write here ({exc.strerror or exc})") from None
