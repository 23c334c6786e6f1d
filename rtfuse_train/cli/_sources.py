"""Data-source arguments shared by the training stages (a helper module, not a stage)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_source_arguments(data: argparse._ArgumentGroup) -> None:
    """--pairs DIR and --video VIS IR (both repeatable) and --every N."""
    data.add_argument("--pairs", type=Path, action="append", default=[], metavar="DIR",
                      help="registered pair folder with vi/ and ir/ (repeatable)")
    data.add_argument("--video", type=Path, nargs=2, action="append", default=[], metavar=("VIS", "IR"),
                      help="registered visible and infrared video files (repeatable)")
    data.add_argument("--every", type=int, default=10, help="take every Nth video frame (default 10)")


def add_scene_arguments(data: argparse._ArgumentGroup) -> None:
    """--night SHARE and --dark-infrared SHARE: night scenes and low-gain thermal cameras in training."""
    data.add_argument("--night", type=float, default=0.0, metavar="SHARE",
                      help="share of training samples whose clean scene is a night scene (darkened visible; default 0)")
    data.add_argument("--dark-infrared", type=float, default=0.0, metavar="SHARE",
                      help="share of training samples whose thermal camera outputs a low level (infrared x 0.15-0.6; default 0)")
