"""``python -m rtfuse_train package``: a stage-2 checkpoint -> the package's shipped weights."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "package a stage-2 checkpoint as shipped weights (float16, both stages' commands, metrics and times)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="stage-2 checkpoint (its stage-1 checkpoint must be where it was)")
    parser.add_argument("-o", "--out", type=Path, help="default: the package's weights, rtfuse/weights/rt.pt")
    parser.add_argument("--note", default="", help="where it was trained (machine, load), kept in the metadata")


def run(args: argparse.Namespace) -> int:
    from rtfuse.fuser import shipped_weights_path
    from rtfuse_train.package import package_weights

    path = package_weights(args.checkpoint, args.out or shipped_weights_path(), args.note)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
