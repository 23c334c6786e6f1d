"""Score fused image folders (or fusers run here) against their sources, with bad-input bookkeeping.

Folders follow the dataset layout ``DIR/ir/NAME`` + ``DIR/vi/NAME``; a fused folder holds
``NAME`` with any image suffix. Fusers that run here (rtfuse, the classical baselines) can see
degraded inputs while being scored against the clean sources, which measures how much of the
clean information survives the degradation.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtfuse.color import rgb_to_gray
from rtfuse.errors import ParameterError, RtfuseError
from rtfuse.imageio import list_images, pair_folders, read_image, to_float01, write_image
from rtfuse.metrics import DEFAULT_CONVENTION, compute_metrics, get_convention, resolve_names

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

