"""`rtfuse` command line.

Each subcommand lives in its own module in this package and is discovered by name: a module
defines ``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int``. Modules import
heavy dependencies inside ``run`` so that ``rtfuse --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from types import ModuleType

from rtfuse.errors import RtfuseError

log = logging.getLogger("rtfuse")


def _subcommands() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found[getattr(module, "NAME", info.name)] = module
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtfuse", description="Real-time infrared + visible video fusion."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in _subcommands().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    fmt = "%(asctime)s %(name)s %(levelname)s: %(message)s" if args.verbose else "rtfuse: %(levelname)s: %(message)s"
    logging.basicConfig(level=level, format=fmt)
    try:
        return int(args._run(args) or 0)
    except RtfuseError as exc:
        print(f"rtfuse {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rtfuse {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
