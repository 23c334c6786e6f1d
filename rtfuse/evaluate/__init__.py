"""Score fused images (or clips) against their sources: per-image rows, a ranked mean table,
a bar chart, bad-input bookkeeping, a temporal flicker metric for video, and a robustness mode.

Folders follow the dataset layout ``DIR/ir/NAME`` + ``DIR/vi/NAME``; a fused folder holds
``NAME`` with any image suffix (videos: ``SEQ.mp4`` etc. with the same stem). Fusers that run
here (rtfuse, the classical baselines) can see degraded inputs while being scored against the
clean sources, which measures how much of the clean information survives the degradation.

- ``folders.py``: :func:`evaluate_folder` (image folders and fusers run here), :func:`degrade_sources`
  (the robustness mode), :class:`EvalResult`, :class:`BadInput`, ``FuseFn``
- ``report.py``: :func:`summarise` and :func:`ranks`, :func:`markdown_table`, :func:`write_csv`,
  :func:`plot_means`
- ``clips.py``: :func:`temporal_flicker`, :func:`evaluate_videos`, :func:`video_table`,
  :func:`is_video_dataset`
"""

from __future__ import annotations

from rtfuse.evaluate.clips import FlickerResult, evaluate_videos, is_video_dataset, temporal_flicker, video_table
from rtfuse.evaluate.folders import BadInput, EvalResult, FuseFn, degrade_sources, evaluate_folder
from rtfuse.evaluate.report import MethodSummary, markdown_table, plot_means, ranks, summarise, write_csv

__all__ = [
    "BadInput", "EvalResult", "FlickerResult", "FuseFn", "MethodSummary", "degrade_sources", "evaluate_folder",
    "evaluate_videos", "is_video_dataset", "markdown_table", "plot_means", "ranks", "summarise", "temporal_flicker",
    "video_table", "write_csv",
]
