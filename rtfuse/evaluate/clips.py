"""Video clips: a temporal flicker metric, and its evaluation over clip pairs ``DIR/{vi,ir}/SEQ.*``.

A fused folder holds clips (``SEQ.mp4`` etc.) with the same stem as their sources.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtfuse.errors import ParameterError, RtfuseError
from rtfuse.evaluate.folders import BadInput, FuseFn
from rtfuse.imageio import IMAGE_SUFFIXES
from rtfuse.metrics import DEFAULT_CONVENTION, get_convention
from rtfuse.video import list_videos, read_video


@dataclass(frozen=True)
class FlickerResult:
    """Temporal behaviour of a fused clip, in grey levels per frame (0..255 scale)."""

    flicker: float
    fused_change: float
    source_change: float
    frames: int


def temporal_flicker(fused: Iterable[np.ndarray], vis: Iterable[np.ndarray], ir: Iterable[np.ndarray]) -> FlickerResult:
    """Mean over pixels and frame steps of max(0, |dF/dt| - max(|dV/dt|, |dI/dt|)).

    Any per-pixel convex combination of the sources changes by at most the larger source
    change, so its flicker is 0; what remains is temporal change the sources do not explain
    (pumping gain, unstable expert choices, amplified noise). Frames are grey 0..255.
    """
    prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    excess = change_f = change_s = 0.0
    steps = 0
    frames = 0
    for f, v, i in zip(fused, vis, ir):
        cur = (f.astype(np.float32), v.astype(np.float32), i.astype(np.float32))
        frames += 1
        if prev is not None:
            df = np.abs(cur[0] - prev[0])
            ds = np.maximum(np.abs(cur[1] - prev[1]), np.abs(cur[2] - prev[2]))
            excess += float(np.maximum(df - ds, 0.0).mean())
            change_f += float(df.mean())
            change_s += float(ds.mean())
            steps += 1
        prev = cur
    if steps == 0:
        raise RtfuseError("temporal flicker needs clips of at least 2 frames")
    return FlickerResult(excess / steps, change_f / steps, change_s / steps, frames)


def is_video_dataset(data: str | Path) -> bool:
    """True when ``data/vi`` holds videos and no images."""
    vi = Path(data) / "vi"
    return vi.is_dir() and bool(list_videos(vi)) and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in vi.iterdir())


def _fuse_clip(fuse: FuseFn, vis_frames: Iterable[np.ndarray], ir_frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Fuse frame by frame; a fuser with ``plan_for`` plans once per clip, as the runtime does."""
    plan = None
    planner = getattr(fuse, "plan_for", None)
    for k, (v, i) in enumerate(zip(vis_frames, ir_frames)):
        if planner is not None:
            if k == 0:
                plan = planner(v, i)
            yield fuse(v, i, plan=plan)
        else:
            yield fuse(v, i)


def evaluate_videos(
    data: str | Path,
    fused_dirs: dict[str, Path] | None = None,
    fusers: dict[str, FuseFn] | None = None,
    convention: str = DEFAULT_CONVENTION,
    max_frames: int | None = None,
) -> tuple[list[dict[str, float | str]], list[BadInput]]:
    """Temporal flicker of each method on each clip pair ``data/{vi,ir}/SEQ.*``."""
    to_gray = get_convention(convention).to_gray
    data = Path(data)
    vis_clips = {p.stem: p for p in list_videos(data / "vi")}
    ir_clips = {p.stem: p for p in list_videos(data / "ir")}
    fused_dirs = dict(fused_dirs or {})
    fusers = dict(fusers or {})
    if not fused_dirs and not fusers:
        raise ParameterError("nothing to score: give `fused_dirs` or `fusers`")
    rows: list[dict[str, float | str]] = []
    bad: list[BadInput] = []
    for stem in sorted(vis_clips.keys() | ir_clips.keys()):
        if stem not in vis_clips or stem not in ir_clips:
            bad.append(BadInput(stem, "sources", "no infrared partner" if stem in vis_clips else "no visible partner"))
            continue
        methods: dict[str, Callable[[], Iterator[np.ndarray]]] = {}
        for method, folder in fused_dirs.items():
            clip = {p.stem: p for p in list_videos(folder)}.get(stem)
            if clip is None:
                bad.append(BadInput(stem, method, "no fused clip"))
                continue
            methods[method] = lambda clip=clip: read_video(clip, max_frames)
        for method, fuse in fusers.items():
            methods[method] = lambda fuse=fuse: _fuse_clip(
                fuse, read_video(vis_clips[stem], max_frames), read_video(ir_clips[stem], max_frames)
            )
        for method, frames in methods.items():
            fused = (to_gray(f) for f in frames())
            vis = (to_gray(f) for f in read_video(vis_clips[stem], max_frames))
            ir = (to_gray(f) for f in read_video(ir_clips[stem], max_frames))
            try:
                r = temporal_flicker(fused, vis, ir)
            except RtfuseError as exc:
                bad.append(BadInput(stem, method, str(exc)))
                continue
            rows.append({"clip": stem, "method": method, "flicker": r.flicker, "fused_change": r.fused_change,
                         "source_change": r.source_change, "frames": r.frames})
    return rows, bad


def video_table(rows: list[dict[str, float | str]]) -> str:
    """Markdown table of flicker per clip and method (lower flicker is better)."""
    lines = ["| clip | method | frames | flicker | mean abs dF/dt | mean max(abs dV/dt, abs dI/dt) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['clip']} | {r['method']} | {r['frames']} | {float(r['flicker']):.4f} | "
                     f"{float(r['fused_change']):.3f} | {float(r['source_change']):.3f} |")
    return "\n".join(lines)
