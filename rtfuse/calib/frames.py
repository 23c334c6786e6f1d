"""Frame pairs to calibrate from: two image files, two folders (paired by name) or two videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtfuse.color import rgb_to_gray
from rtfuse.errors import RtfuseError
from rtfuse.imageio import IMAGE_SUFFIXES, pair_folders, read_image
from rtfuse.video import read_frames_spread, spread_indices


def load_pairs(vis: str | Path, ir: str | Path, frames: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """(visible, infrared) pairs from two image files, two folders (paired by name) or two videos.

    From folders and videos, ``frames`` pairs spread evenly over the set are taken: frames far
    apart in time show different content, which makes the consensus meaningful.
    """
    vis, ir = Path(vis), Path(ir)
    if vis.is_dir() != ir.is_dir():
        raise RtfuseError(f"give two folders or two files, not {vis} and {ir}")
    if vis.is_dir():
        found = pair_folders(vis, ir)
        if not found.pairs:
            raise RtfuseError(f"no image names in common between {vis} and {ir}")
        chosen = [found.pairs[i] for i in spread_indices(len(found.pairs), frames)]
        return [(read_image(v), read_image(i, gray=True)) for v, i in chosen]
    if vis.suffix.lower() in IMAGE_SUFFIXES and ir.suffix.lower() in IMAGE_SUFFIXES:
        return [(read_image(vis), read_image(ir, gray=True))]
    vis_frames, ir_frames = read_frames_spread(vis, frames), read_frames_spread(ir, frames)
    return [(v, rgb_to_gray(i)) for v, i in zip(vis_frames, ir_frames)]
