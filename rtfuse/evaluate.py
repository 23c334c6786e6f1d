"""Score fused images (or clips) against their sources: per-image rows, a ranked mean table,
a bar chart, bad-input bookkeeping, a temporal flicker metric for video, and a robustness mode.

Folders follow the dataset layout ``DIR/ir/NAME`` + ``DIR/vi/NAME``; a fused folder holds
``NAME`` with any image suffix (videos: ``SEQ.mp4`` etc. with the same stem). Fusers that run
here (rtfuse, the classical baselines) can see degraded inputs while being scored against the
clean sources, which measures how much of the clean information survives the degradation.
"""

from __future__ import annotations

import csv
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtfuse.color import rgb_to_gray
from rtfuse.errors import ParameterError, RtfuseError
from rtfuse.imageio import IMAGE_SUFFIXES, list_images, pair_folders, read_image, save_figure, to_float01, write_image
from rtfuse.metrics import DEFAULT_CONVENTION, compute_metrics, get_convention, resolve_names
from rtfuse.video import list_videos, read_video

FuseFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class BadInput:
    """An input left out of the means, and why."""

    name: str
    method: str
    reason: str


@dataclass
class EvalResult:
    """Per-image metric rows of every method, plus what could not be scored."""

    convention: str
    metrics: list[str]
    methods: list[str]
    rows: list[dict[str, float | str]] = field(default_factory=list)
    bad: list[BadInput] = field(default_factory=list)


@dataclass(frozen=True)
class MethodSummary:
    method: str
    images: int
    means: dict[str, float]
    counts: dict[str, int]
    rank: float


# ------------------------------------------------------------------------------ degradation


def degrade_sources(vis: np.ndarray, ir: np.ndarray, spec: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Degraded uint8 copies of a pair (vis RGB, ir grey), seeded by the image name so reruns match."""
    from rtfuse.degrade import degrade_pair

    v = vis if vis.ndim == 3 else np.repeat(vis[..., None], 3, axis=2)
    i = rgb_to_gray(ir)
    vd, idg = degrade_pair(to_float01(v), to_float01(i), spec, seed=zlib.crc32(name.encode()))
    return _quantise01(vd), _quantise01(idg)


def _quantise01(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ image folders


def _fused_index(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in list_images(folder)}


def _score(ir: np.ndarray, vis: np.ndarray, fused: np.ndarray, convention: str, names: list[str]) -> dict[str, float] | str:
    """Metrics, or the reason they could not be computed (size mismatch, image too small)."""
    try:
        return compute_metrics(ir, vis, fused, convention, names)
    except (RtfuseError, ValueError) as exc:
        return str(exc)


def evaluate_folder(
    data: str | Path,
    fused_dirs: dict[str, Path] | None = None,
    fusers: dict[str, FuseFn] | None = None,
    convention: str = DEFAULT_CONVENTION,
    names: Iterable[str] | None = None,
    degrade: str | None = None,
    limit: int | None = None,
    save_fused: str | Path | None = None,
    workers: int | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> EvalResult:
    """Score every pair of ``data`` for precomputed fused folders and for fusers run here.

    ``degrade`` (``KIND:SEVERITY,...``) degrades the inputs of ``fusers`` only; scores are always
    against the clean sources. Missing partners, unreadable files and size mismatches are
    recorded in ``result.bad`` and excluded.
    """
    get_convention(convention)
    metric_names = resolve_names(names)
    fused_dirs = dict(fused_dirs or {})
    fusers = dict(fusers or {})
    clash = set(fused_dirs) & set(fusers)
    if clash:
        raise RtfuseError(f"method name used twice: {', '.join(sorted(clash))}")
    if not fused_dirs and not fusers:
        raise ParameterError("nothing to score: give `fused_dirs` or `fusers`")
    if degrade and fused_dirs:
        raise ParameterError("`degrade` applies to `fusers` run here, not to `fused_dirs` fused elsewhere")
    data = Path(data)
    pairs = pair_folders(data / "vi", data / "ir")
    result = EvalResult(convention, metric_names, [*fused_dirs, *fusers])
    for p in pairs.missing_ir:
        result.bad.append(BadInput(p.name, "sources", "no infrared partner"))
    for p in pairs.missing_vis:
        result.bad.append(BadInput(p.name, "sources", "no visible partner"))
    todo = pairs.pairs[:limit] if limit else pairs.pairs
    indexes = {}
    stems = {v.stem for v, _ in pairs.pairs}
    for method, folder in fused_dirs.items():
        indexes[method] = _fused_index(folder)
        for stem in sorted(set(indexes[method]) - stems):
            result.bad.append(BadInput(indexes[method][stem].name, method, "no source pair"))

    iterator = progress(todo) if progress else todo
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for vis_path, ir_path in iterator:
            name = vis_path.name
            try:
                vis = read_image(vis_path)
                ir = read_image(ir_path)
            except RtfuseError as exc:
                result.bad.append(BadInput(name, "sources", str(exc)))
                continue
            if vis.shape[:2] != ir.shape[:2]:
                result.bad.append(BadInput(name, "sources", f"visible {vis.shape[1]}x{vis.shape[0]} vs infrared {ir.shape[1]}x{ir.shape[0]}"))
                continue
            jobs: list[tuple[str, object]] = []
            for method in fused_dirs:
                path = indexes[method].get(vis_path.stem)
                if path is None:
                    result.bad.append(BadInput(name, method, "no fused output"))
                    continue
                try:
                    fused = read_image(path)
                except RtfuseError as exc:
                    result.bad.append(BadInput(name, method, str(exc)))
                    continue
                jobs.append((method, pool.submit(_score, ir, vis, fused, convention, metric_names)))
            if fusers:
                fv, fi = degrade_sources(vis, ir, degrade, vis_path.stem) if degrade else (vis, ir)
                for method, fuse in fusers.items():
                    fused = fuse(fv, fi)
                    if save_fused:
                        write_image(Path(save_fused) / method / f"{vis_path.stem}.png", fused)
                    jobs.append((method, pool.submit(_score, ir, vis, fused, convention, metric_names)))
            for method, job in jobs:
                scores = job.result()
                if isinstance(scores, str):
                    result.bad.append(BadInput(name, method, scores))
                else:
                    result.rows.append({"image": name, "method": method, **scores})
    return result


# ------------------------------------------------------------------------------ summaries


def _ranks(values: list[float]) -> list[float]:
    """Rank 1 = highest; ties share their average rank; NaN ranks last."""
    order = sorted(range(len(values)), key=lambda k: -values[k] if math.isfinite(values[k]) else math.inf)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def summarise(result: EvalResult) -> list[MethodSummary]:
    """Mean of each metric per method over the images where it is finite, and the mean rank
    over metrics (every metric here is higher-is-better)."""
    stats = {}
    for method in result.methods:
        rows = [r for r in result.rows if r["method"] == method]
        means, counts = {}, {}
        for m in result.metrics:
            vals = np.array([float(r[m]) for r in rows], dtype=np.float64)
            ok = vals[np.isfinite(vals)]
            means[m] = float(ok.mean()) if ok.size else float("nan")
            counts[m] = int(ok.size)
        stats[method] = (len(rows), means, counts)
    rank_sum = {method: 0.0 for method in result.methods}
    for m in result.metrics:
        for method, r in zip(result.methods, _ranks([stats[x][1][m] for x in result.methods])):
            rank_sum[method] += r
    n_metrics = max(len(result.metrics), 1)
    return [
        MethodSummary(method, stats[method][0], stats[method][1], stats[method][2], rank_sum[method] / n_metrics)
        for method in result.methods
    ]


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def markdown_table(result: EvalResult) -> str:
    """Mean per metric and method; best mean in bold; ``n`` images per mean; mean rank (1 = best)."""
    summary = summarise(result)
    best = {}
    for m in result.metrics:
        finite = [s.means[m] for s in summary if math.isfinite(s.means[m])]
        best[m] = max(finite) if finite else None
    head = ["method", "n", *result.metrics, "rank"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        cells = [s.method, str(s.images)]
        for m in result.metrics:
            cell = _fmt(s.means[m])
            if best[m] is not None and s.means[m] == best[m]:
                cell = f"**{cell}**"
            if s.counts[m] != s.images:
                cell += f" ({s.counts[m]})"
            cells.append(cell)
        cells.append(f"{s.rank:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(result: EvalResult, path: str | Path) -> None:
    """One row per (image, method) with every metric, and the convention that produced it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "method", "convention", *result.metrics])
        for r in result.rows:
            w.writerow([r["image"], r["method"], result.convention, *(repr(float(r[m])) for m in result.metrics)])


def plot_means(result: EvalResult, path: str | Path) -> None:
    """Bar chart, one panel per metric, best method highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(result)
    n = len(result.metrics)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows + 0.6), squeeze=False)
    labels = [s.method for s in summary]
    for ax, m in zip(axes.flat, result.metrics):
        vals = [s.means[m] for s in summary]
        finite = [v for v in vals if math.isfinite(v)]
        top = max(finite) if finite else None
        colors = ["tab:orange" if v == top else "tab:blue" for v in vals]
        ax.bar(range(len(vals)), [v if math.isfinite(v) else 0.0 for v in vals], color=colors)
        ax.set_title(m)
        ax.set_xticks(range(len(vals)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"mean per method ({result.convention} convention)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


# ------------------------------------------------------------------------------ video


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
