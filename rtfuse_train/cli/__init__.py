"""`python -m rtfuse_train` command line: one module per stage, discovered by name.

A stage module defines ``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int`` and
imports torch inside ``run``, like the ``rtfuse`` subcommands.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from types import ModuleType

from rtfuse.errors import RtfuseError


def _stages() -> dict[str, ModuleType]:
    return {info.name: importlib.import_module(f"{__name__}.{info.name}")
            for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name) if not info.name.startswith("_")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rtfuse_train", description="Train rtfuse models.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="STAGE")
    sub.required = True
    for name, module in _stages().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose + 1, 2)]
    rank = os.environ.get("RANK")
    prefix = f"[rank {rank}] " if rank is not None else ""
    logging.basicConfig(level=level, format=f"{prefix}%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except RtfuseError as exc:
        print(f"rtfuse_train {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rtfuse_train {args.command}: interrupted", file=sys.stderr)
        return 130
