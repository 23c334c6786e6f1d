"""Arguments shared by the training stages: data sources, scenes, the training loop (a helper module, not a stage)."""

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


def add_training_arguments(parser: argparse.ArgumentParser, batch_size: int, weight_decay: float) -> argparse._ArgumentGroup:
    """The training loop's options, the same for every stage but for two defaults; returns the group."""
    train = parser.add_argument_group("training")
    train.add_argument("--out", type=Path, required=True, help="FusionNet checkpoint to write")
    train.add_argument("--run-dir", type=Path, help="training state and CSV logs (default OUT_run/ beside OUT)")
    train.add_argument("--epochs", type=int, default=10, help="passes over the training samples (default 10)")
    train.add_argument("--batch-size", type=int, default=batch_size, help=f"global batch over all processes (default {batch_size})")
    train.add_argument("--lr", type=float, default=2e-3, help="learning rate after the warm-up, decayed to zero by a cosine (default 0.002)")
    train.add_argument("--weight-decay", type=float, default=weight_decay, help=f"default {weight_decay}")
    train.add_argument("--warmup-steps", type=int, default=50, help="linear warm-up of the learning rate (default 50)")
    train.add_argument("--seed", type=int, default=0, help="seeds the data order, the degradations and the weights (default 0)")
    train.add_argument("--workers", type=int, default=1, help="DataLoader worker processes (default 1)")
    train.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    train.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and after the last)")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir after its last epoch")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    return train
