"""How much detail can a fusion keep without making any up? AG and SF of each source, and of the
per-pixel stronger source: the mean over pixels of max(AG term of vis, AG term of ir), and SF with
each squared difference the larger of the two sources'. A fused image whose AG (or SF) exceeds
that bound has, on average, gradients stronger than both sources at the same place: sharpened,
or edges that neither camera saw. Read beside the AG/SF columns of a table: a method above the
bound scores detail it did not take from the sources.

    python experiments/detail_bound.py --data ../shared/data/tno [--data DIR ...] [--limit N]

Prints JSON (per dataset: means over pairs, matlab convention) and a markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rtfuse.imageio import pair_folders, read_image
from rtfuse.metrics import get_convention
from rtfuse.metrics.spatial import average_gradient, gradient_map, spatial_frequency, squared_differences


def pair_bounds(vis: np.ndarray, ir: np.ndarray) -> dict[str, float]:
    """AG and SF of both sources and of their per-pixel maximum (matlab convention)."""
    to_gray = get_convention("matlab").to_gray
    v, i = to_gray(vis).astype(np.float64), to_gray(ir).astype(np.float64)
    ag_max = np.maximum(gradient_map(v), gradient_map(i))
    (v_rows, v_cols), (i_rows, i_cols) = squared_differences(v), squared_differences(i)
    rows, cols = np.maximum(v_rows, i_rows), np.maximum(v_cols, i_cols)
    return {
        "AG_vis": average_gradient(v), "AG_ir": average_gradient(i),
        "AG_bound": float(ag_max.sum() / ((v.shape[0] - 1) * (v.shape[1] - 1))),
        "SF_vis": spatial_frequency(v), "SF_ir": spatial_frequency(i),
        "SF_bound": float(np.sqrt(rows.mean() + cols.mean())),
    }


def dataset_bounds(folder: Path, limit: int | None) -> dict[str, float]:
    pairs = pair_folders(folder / "vi", folder / "ir").pairs[:limit]
    rows = [pair_bounds(read_image(v), read_image(i)) for v, i in pairs]
    return {"pairs": len(rows), **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", action="append", type=Path, required=True, help="folders with vi/ and ir/ (repeatable)")
    p.add_argument("--limit", type=int, help="pairs per dataset (default: all)")
    args = p.parse_args(argv)
    result = {str(d): dataset_bounds(d, args.limit) for d in args.data}
    print(json.dumps(result, indent=1))
    keys = ("AG_vis", "AG_ir", "AG_bound", "SF_vis", "SF_ir", "SF_bound")
    print("\n| data | pairs | " + " | ".join(keys) + " |\n|---|---|" + "---|" * len(keys))
    for name, r in result.items():
        print(f"| {Path(name).name} | {r['pairs']} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
