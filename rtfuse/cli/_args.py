"""Argument helpers shared by several subcommands (not a subcommand itself: leading underscore)."""

from __future__ import annotations

import argparse

from rtfuse import defaults


def frame_size(text: str) -> tuple[int, int]:
    """Parse WxH (e.g. 640x480) into (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WxH, e.g. 640x480") from None
    return w, h


def add_engine_arguments(p: argparse.ArgumentParser, default: str = "eager") -> None:
    """--backend/--precision/--engine/--device, shared by the commands that fuse; a long-running
    command (``default="auto"``) also offers ``auto``."""
    g = p.add_argument_group("engine backend")
    auto = default == "auto"
    g.add_argument("--backend", choices=(("auto",) if auto else ()) + defaults.BACKENDS, default=default,
                   help=("auto (default): eager at once, the aoti engine built aside and switched to when ready "
                         "(cached: later runs start compiled); " if auto else "eager (default), ")
                   + "compiled (torch.compile), aoti (AOTInductor), tensorrt (NVIDIA GPU)"
                   + ("; eager" if auto else ""))
    g.add_argument("--precision", choices=defaults.PRECISIONS, help="compiled backends: bf16 (CPU) or fp16 (GPU)")
    g.add_argument("--engine", metavar="export/NAME", help="an artifact from `rtfuse export` (aoti/tensorrt)")
    g.add_argument("--device", default="cpu", help="cpu (default) or cuda")


def engine_options(args: argparse.Namespace) -> dict:
    return {"backend": args.backend, "precision": args.precision, "engine": args.engine}
