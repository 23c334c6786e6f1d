"""Turn a stage-2 checkpoint into the package's shipped weights.

The shipped file is the same FusionNet checkpoint stored in float16 (half the size; loaded as
float32), with what a model card needs in its metadata: both stages' commands, held-out metrics
and training times.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from rtfuse.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from rtfuse.errors import RtfuseError
from rtfuse_train.trainer import EPOCHS_CSV


def training_seconds(checkpoint: str | Path) -> float | None:
    """Training time of the run that wrote ``checkpoint``, from ``OUT_run/epochs.csv``.

    A resumed run restarts its clock, so the log is read as segments and their ends are summed.
    """
    log = Path(checkpoint).with_name(Path(checkpoint).stem + "_run") / EPOCHS_CSV
    if not log.is_file():
        return None
    with log.open() as f:
        elapsed = [float(row["elapsed_s"]) for row in csv.DictReader(f) if row.get("elapsed_s")]
    total, previous = 0.0, 0.0
    for e in elapsed:
        if e < previous:
            total += previous
        previous = e
    return total + previous


def package_weights(stage2: str | Path, out: str | Path, note: str = "") -> Path:
    model, meta = load_checkpoint(stage2)
    if meta.get("stage") != 2:
        raise RtfuseError(f"{stage2}: not a stage-2 checkpoint (stage {meta.get('stage')!r})")
    dagm = meta.get("dagm")
    if not dagm or not Path(dagm).is_file():
        raise RtfuseError(f"{stage2}: its stage-1 checkpoint {dagm!r} is not here; package where it was trained")
    stage1 = read_checkpoint(dagm).get("metadata", {})  # metadata only: the network around its DAGM may differ
    card: dict[str, Any] = {
        **meta,
        "stage1_command": stage1.get("command"),
        "stage1_test_accuracy": stage1.get("test_accuracy"),
        "stage1_wall_s": training_seconds(dagm),
        "stage2_command": meta.get("command"),
        "stage2_wall_s": training_seconds(stage2),
        "machine": note,
        "storage": "float16 (loaded as float32)",
    }
    return save_checkpoint(out, model, card, dtype=torch.float16)
