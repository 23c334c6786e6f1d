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

from rtfuse.errors import ParameterError, RtfuseError

log = logging.getLogger("rtfuse")


def discover(path: list[str], package: str) -> dict[str, ModuleType]:
    """Subcommand modules of a package, by name (modules starting with '_' are helpers)."""
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        found[getattr(module, "NAME", info.name)] = module
    return found


def command_parser(prog: str, description: str, commands: dict[str, ModuleType], metavar: str = "COMMAND") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar=metavar)
    sub.required = True
    for name, module in commands.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(_run=module.run, _options=option_names(p, getattr(module, "PARAMETER_OPTIONS", {})))
    return parser


def option_names(parser: argparse.ArgumentParser, aliases: dict[str, str]) -> dict[str, str]:
    """How this command spells a library parameter: its option of that destination (``engine`` ->
    ``--engine``), or ``aliases`` where the library's name differs from the option's."""
    names = {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings}
    return {**names, **aliases}


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Run the chosen subcommand; user-facing errors become one line and exit status 2."""
    try:
        return int(args._run(args) or 0)
    except RtfuseError as exc:
        message = exc.spelled(getattr(args, "_options", {})) if isinstance(exc, ParameterError) else str(exc)
        print(f"{prog} {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog} {args.command}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    return command_parser("rtfuse", "Real-time infrared + visible video fusion.", discover(__path__, __name__))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    fmt = "%(asctime)s %(name)s %(levelname)s: %(message)s" if args.verbose else "rtfuse: %(levelname)s: %(message)s"
    logging.basicConfig(level=level, format=fmt)
    return run_command(args, "rtfuse")


if __name__ == "__main__":
    sys.exit(main())
