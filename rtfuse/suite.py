"""The cross-camera evaluation suite: rtfuse beside the classical baselines on every real set.

A learned fusion earns its cost only where no fixed rule dominates it, and only on cameras it did
not train on. For each set the suite scores rtfuse and the ``max``, ``mean`` and ``laplacian``
baselines on the same pairs with a quirk-free convention, and reports per set the means, which
baselines dominate rtfuse on (Qabf, VIF, AG, SD), how many images fall below plain averaging on
Qabf, and a comparison sheet of its worst images (visible, infrared, rtfuse, max, laplacian) to
look at.

Sets (under a data root laid out like ``../shared/data``): TNO, MSRS, LLVIP, the RoadScene test
split (the training camera's held-out images), and every 10th frame of each M2VD clip. Whether a
set's camera was seen in training is part of its row: model selection reads held-out cameras.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rtfuse.baselines import BASELINES
from rtfuse.color import rgb_to_gray
from rtfuse.datasplit import in_test_split
from rtfuse.errors import RtfuseError
from rtfuse.evaluate import FuseFn
from rtfuse.imageio import pair_folders, read_image, write_image
from rtfuse.metrics import DEFAULT_CONVENTION, compute_metrics
from rtfuse.sheet import grid, tile
from rtfuse.video import list_videos, read_video

SUITE_METRICS = ("Qabf", "VIF", "AG", "SD")  # what dominance is judged on: edges, information, detail, contrast
OURS = "rtfuse"
SHEET_METHODS = (OURS, "max", "laplacian")
SHEET_IMAGES = 4  # the images where rtfuse's Qabf falls furthest below the best baseline's
VIDEO_EVERY = 10
# Cameras the shipped weights trained on: RoadScene's training split and two M2VD clips (one rig).
TRAINING_CLIPS = ("0111_1716", "0113_1714")

Pair = tuple[str, np.ndarray, np.ndarray]  # name, visible (RGB or grey), infrared (grey)


@dataclass(frozen=True)
class SuiteSet:
    """One real set of the suite: how to read its pairs, and whether its camera is unseen."""

    name: str
    held_out: bool
    note: str
    pairs: Callable[[], Iterator[Pair]] = field(compare=False, repr=False)


def _folder_pairs(folder: Path, keep: Callable[[str], bool] = lambda stem: True) -> Callable[[], Iterator[Pair]]:
    def pairs() -> Iterator[Pair]:
        for vis_path, ir_path in pair_folders(folder / "vi", folder / "ir").pairs:
            if keep(vis_path.stem):
                yield vis_path.stem, read_image(vis_path), read_image(ir_path, gray=True)

    return pairs


def _clip_pairs(vis_clip: Path, ir_clip: Path, every: int) -> Callable[[], Iterator[Pair]]:
    def pairs() -> Iterator[Pair]:
        frames = zip(read_video(vis_clip, every=every), read_video(ir_clip, every=every))
        for k, (vis, ir) in enumerate(frames):
            yield f"{vis_clip.stem}#{k * every:04d}", vis, rgb_to_gray(ir)

    return pairs


def clip_root(root: str | Path) -> Path | None:
    """The folder of the suite's M2VD clips (``vi/`` and ``ir/`` videos), if ``root`` has it."""
    clips = Path(root) / "video" / "m2vd"
    return clips if (clips / "vi").is_dir() and (clips / "ir").is_dir() else None


def suite_sets(root: str | Path, every: int = VIDEO_EVERY) -> list[SuiteSet]:
    """The suite's sets found under ``root``; a set whose folder is missing is left out."""
    root = Path(root)
    if not root.is_dir():
        raise RtfuseError(f"{root}: not a folder")
    found: list[SuiteSet] = []
    for name, note in (("tno", "TNO, 42 grey pairs"), ("msrs", "MSRS test pairs, day and night"),
                       ("llvip", "LLVIP samples, night street surveillance")):
        if (root / name / "vi").is_dir():
            found.append(SuiteSet(name, True, note, _folder_pairs(root / name)))
    if (root / "roadscene" / "vi").is_dir():
        found.append(SuiteSet("roadscene-test", False, "RoadScene test split: the training camera's held-out images",
                              _folder_pairs(root / "roadscene", lambda stem: in_test_split(f"roadscene/{stem}"))))
    clips = clip_root(root)
    if clips is not None:
        ir_clips = {p.stem: p for p in list_videos(clips / "ir")}
        for vis_clip in list_videos(clips / "vi"):
            if vis_clip.stem in ir_clips:
                seen = vis_clip.stem in TRAINING_CLIPS
                found.append(SuiteSet(f"m2vd-{vis_clip.stem}", not seen,
                                      f"M2VD clip, every {every}th frame" + (" (trained on)" if seen else ""),
                                      _clip_pairs(vis_clip, ir_clips[vis_clip.stem], every)))
    if not found:
        raise RtfuseError(f"{root}: none of the suite's sets (tno, msrs, llvip, roadscene, video/m2vd) is there")
    return found


# ------------------------------------------------------------------------------ verdicts


def dominates(a: dict[str, float], b: dict[str, float], metrics: Iterable[str] = SUITE_METRICS) -> bool:
    """Whether means ``a`` dominate ``b``: at least as good on every metric, better on one."""
    metrics = list(metrics)
    return all(a[m] >= b[m] for m in metrics) and any(a[m] > b[m] for m in metrics)


@dataclass
class SetReport:
    """One set's scores: per method the means, and the verdicts on rtfuse."""

    name: str
    held_out: bool
    note: str
    images: int
    means: dict[str, dict[str, float]]
    dominated_by: list[str]
    below_mean: list[str]  # images where rtfuse scores below mean fusion on Qabf
    sheet: str | None = None

    @property
    def verdict(self) -> str:
        if self.dominated_by:
            return "dominated by " + ", ".join(self.dominated_by)
        return "not dominated"


def score_set(suite_set: SuiteSet, fusers: dict[str, FuseFn], convention: str = DEFAULT_CONVENTION,
              limit: int | None = None, sheet_dir: Path | None = None, sheet_width: int = 200,
              progress: Callable[[Iterable], Iterable] | None = None) -> SetReport:
    """Score every fuser on every pair of the set; ``fusers`` must hold ``rtfuse`` and ``mean``."""
    for needed in (OURS, "mean"):
        if needed not in fusers:
            raise RtfuseError(f"the suite needs a fuser named {needed!r}")
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in fusers}
    names: list[str] = []
    sheet_rows: list[tuple[float, list[np.ndarray]]] = []  # (rtfuse's Qabf margin over the best baseline, tiles)
    pairs: Iterable[Pair] = suite_set.pairs()
    if limit:
        pairs = (p for k, p in enumerate(pairs) if k < limit)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # the metrics release the GIL
        for name, vis, ir in progress(pairs) if progress else pairs:
            fused = {method: fuse(vis, ir) for method, fuse in fusers.items()}
            jobs = {method: pool.submit(compute_metrics, ir, vis, img, convention, list(SUITE_METRICS))
                    for method, img in fused.items()}
            for method, job in jobs.items():
                rows[method].append(job.result())
            names.append(name)
            if sheet_dir is not None:
                margin = rows[OURS][-1]["Qabf"] - max(rows[m][-1]["Qabf"] for m in fusers if m != OURS)
                sheet_rows.append((margin, [tile(vis, sheet_width, f"{name} visible"), tile(ir, sheet_width, "infrared"),
                                            tile(fused[OURS], sheet_width, f"{OURS} (Qabf {margin:+.3f} vs best)"),
                                            *(tile(fused[m], sheet_width, m) for m in SHEET_METHODS[1:] if m in fused)]))
                sheet_rows = sorted(sheet_rows, key=lambda row: row[0])[:SHEET_IMAGES]  # keep only the worst
    if not names:
        raise RtfuseError(f"set {suite_set.name}: no pairs")
    means = {m: {k: float(np.mean([r[k] for r in rs])) for k in SUITE_METRICS} for m, rs in rows.items()}
    dominated_by = [m for m in fusers if m != OURS and dominates(means[m], means[OURS])]
    below = [n for n, ours, mean in zip(names, rows[OURS], rows["mean"]) if ours["Qabf"] < mean["Qabf"]]
    sheet = None
    if sheet_dir is not None and sheet_rows:
        sheet_path = Path(sheet_dir) / f"sheet_{suite_set.name}.png"
        write_image(sheet_path, grid([tiles for _, tiles in sheet_rows]))
        sheet = str(sheet_path)
    return SetReport(suite_set.name, suite_set.held_out, suite_set.note, len(names), means, dominated_by, below, sheet)


def suite_fusers(ours: FuseFn) -> dict[str, FuseFn]:
    """rtfuse, each image planned on its own (the sets are unrelated images), and the baselines."""
    planner = getattr(ours, "plan_for", None)
    fused: FuseFn = (lambda v, i: ours(v, i, plan=planner(v, i))) if planner is not None else ours
    return {OURS: fused, **BASELINES}


# ------------------------------------------------------------------------------ reports


def _fmt(v: float) -> str:
    return "n/a" if not math.isfinite(v) else (f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}")


def markdown(reports: list[SetReport], convention: str = DEFAULT_CONVENTION) -> str:
    """One table per set (best mean in bold) under a one-line verdict per set."""
    lines = [f"convention: {convention} (Qabf without the equal-strength quirk); "
             f"dominance on {', '.join(SUITE_METRICS)}", "",
             "| set | camera | images | verdict | images below `mean` on Qabf |", "|---|---|---|---|---|"]
    for r in reports:
        lines.append(f"| {r.name} | {'held out' if r.held_out else 'seen in training'} | {r.images} | "
                     f"{r.verdict} | {len(r.below_mean)}{' (' + ', '.join(r.below_mean[:5]) + ')' if r.below_mean else ''} |")
    for r in reports:
        lines += ["", f"**{r.name}** ({r.note}; {r.images} pairs)", "",
                  "| method | " + " | ".join(SUITE_METRICS) + " |", "|---|" + "---|" * len(SUITE_METRICS)]
        best = {m: max(v[m] for v in r.means.values()) for m in SUITE_METRICS}
        for method, means in r.means.items():
            cells = [f"**{_fmt(means[m])}**" if means[m] == best[m] else _fmt(means[m]) for m in SUITE_METRICS]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        if r.sheet:
            lines.append(f"\ncomparison sheet: {r.sheet}")
    return "\n".join(lines)


def write_json(reports: list[SetReport], path: str | Path, convention: str = DEFAULT_CONVENTION) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"convention": convention, "metrics": list(SUITE_METRICS),
            "sets": [{**asdict(r), "verdict": r.verdict} for r in reports]}
    path.write_text(json.dumps(body, indent=1))
