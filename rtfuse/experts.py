"""Expert activation statistics per degradation type (the paper's Fig. 19).

For each degradation class, pairs are degraded synthetically, planned through DAGM and the gates,
and the gate weights are averaged into a (layers x experts) matrix. If gating follows
degradation, the matrices differ between classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from rtfuse.degrade import CLASSES, degrade_pair
from rtfuse.imageio import save_figure
from rtfuse.model import TASK_FUSION, FusionNet


def layer_names(model: FusionNet) -> list[str]:
    n = len(model.cfg.channels)
    return [f"vis enc {i}" for i in range(n)] + [f"ir enc {i}" for i in range(n)] + [f"dec {n - 1 - i}" for i in range(n)]


@torch.no_grad()
def gate_matrix(model: FusionNet, vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """(layers, experts) gate weights of one pair (vis float RGB, ir float gray, both in [0,1])."""
    v = torch.from_numpy(np.ascontiguousarray(vis.transpose(2, 0, 1)))[None].float()
    i = torch.from_numpy(np.ascontiguousarray(ir))[None, None].float()
    d = model.dagm(v, i).vector
    return torch.stack([g.gates[0] for g in model.gates(d, TASK_FUSION, noisy=False)]).numpy()


def activation_by_class(
    model: FusionNet,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    severities: Sequence[float] = (0.3, 0.6, 0.9),
    classes: Sequence[str] = CLASSES,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Mean gate matrix per degradation class over all pairs and severities."""
    sums: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(classes, 0)
    for k, (vis, ir) in enumerate(pairs):
        for cls in classes:
            specs = [[]] if cls == "clean" else [[(cls, s)] for s in severities]
            for spec in specs:
                dv, di = degrade_pair(vis, ir, spec, seed=seed + k) if spec else (vis, ir)
                m = gate_matrix(model, dv, di)
                sums[cls] = sums.get(cls, 0) + m
                counts[cls] += 1
    return {cls: sums[cls] / counts[cls] for cls in classes if counts[cls]}


def routing_distance(mats: dict[str, np.ndarray]) -> float:
    """Mean total-variation distance between classes' gate distributions, averaged over layers."""
    names = sorted(mats)
    dists = [
        0.5 * np.abs(mats[a] - mats[b]).sum(1).mean() for i, a in enumerate(names) for b in names[i + 1 :]
    ]
    return float(np.mean(dists)) if dists else 0.0


def expert_names(model: FusionNet) -> list[str]:
    return [f"{kh}x{kw}" + (f"d{d}" if d > 1 else "") for kh, kw, d in model.cfg.expert_kernels]


def plot_heatmaps(
    mats: dict[str, np.ndarray], rows: list[str], cols: list[str], out: str | Path, title: str = ""
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(mats)
    fig, axes = plt.subplots(1, len(names), figsize=(2.3 * len(names) + 1.5, 0.32 * len(rows) + 1.6), sharey=True)
    axes = np.atleast_1d(axes)
    vmax = max(float(m.max()) for m in mats.values())
    for ax, name in zip(axes, names):
        im = ax.imshow(mats[name], cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels(cols, fontsize=6, rotation=90)
        ax.set_xlabel("expert", fontsize=8)
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(rows, fontsize=7)
    fig.colorbar(im, ax=axes.tolist(), shrink=0.8, label="mean gate weight")
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, out, dpi=130, bbox_inches="tight")
