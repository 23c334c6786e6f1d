"""`python -m rtfuse_train` command line: one module per stage, discovered by name.

A stage module defines ``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int`` and
imports torch inside ``run``, like the ``rtfuse`` subcommands.
"""

from __future__ import annotations

import argparse
import logging
import os

from rtfuse.cli import command_parser, discover, run_command


def build_parser() -> argparse.ArgumentParser:
    return command_parser("python -m rtfuse_train", "Train rtfuse models.", discover(__path__, __name__), "STAGE")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose + 1, 2)]
    rank = os.environ.get("RANK")
    prefix = f"[rank {rank}] " if rank is not None else ""
    logging.basicConfig(level=level, format=f"{prefix}%(asctime)s %(name)s %(levelname)s: %(message)s")
    return run_command(args, "rtfuse_train")
