"""Summaries of an evaluation: per-method means and mean ranks, a markdown table, a CSV, a bar chart."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtfuse.evaluate.folders import EvalResult
from rtfuse.imageio import save_figure


@dataclass(frozen=True)
class MethodSummary:
    method: str
    images: int
    means: dict[str, float]
    counts: dict[str, int]
    rank: float


def ranks(values: list[float]) -> list[float]:
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
        for method, r in zip(result.methods, ranks([stats[x][1][m] for x in result.methods])):
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
        bars = ax.bar(range(len(vals)), [v if math.isfinite(v) else 0.0 for v in vals], color=colors)
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in vals], fontsize=6)
        ax.set_title(m)
        ax.set_xticks(range(len(vals)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"mean per method ({result.convention} convention; orange: the best of {len(labels)})")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)

