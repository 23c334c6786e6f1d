"""Is a set's own registration a reference to 2 px? (issue 26 research)

The known-warp error of a self-consistent estimator is its estimate's distance from the identity
on the unwarped pair: the set's registration is the reference. Here the identity and the estimate
(``rtfuse.calib.estimate`` on the unwarped pair) are compared by two measures the estimator does
not use: the correlation of the Gaussian-blurred gradient magnitudes and the mutual information of
the intensities (32 bins), both over the overlap eroded by 4 px. Per pair one JSON row; per set a
summary of how many pairs each measure prefers the estimate on. ``--sheet NAME`` also writes the
edge overlay of that pair at the identity and at the estimate (``rtfuse calib --check`` colours),
magnified twice, one above the other.

    .venv/bin/python experiments/reference_check.py [--sets roadscene,m2vd] [--sheet FLIR_00006.jpg out.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from calib_warps import DEFAULT_DATA, _pairs  # noqa: E402

from rtfuse import calib  # noqa: E402
from rtfuse.calib.overlay import edge_overlay  # noqa: E402
from rtfuse.calib.register import _gradient_magnitude  # noqa: E402
from rtfuse.color import rgb_to_gray  # noqa: E402
from rtfuse.errors import RtfuseError  # noqa: E402


def _gray(img: np.ndarray) -> np.ndarray:
    return (rgb_to_gray(img) if img.ndim == 3 else img).astype(np.float32)


def _mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    joint, _, _ = np.histogram2d(a, b, bins=bins)
    p = joint / joint.sum()
    independent = p.sum(axis=1, keepdims=True) @ p.sum(axis=0, keepdims=True)
    seen = p > 0
    return float((p[seen] * np.log(p[seen] / independent[seen])).sum())


def alignment_measures(vis: np.ndarray, ir: np.ndarray, hom: np.ndarray) -> tuple[float, float]:
    """(gradient-magnitude correlation, mutual information) of vis and ir warped by hom."""
    h, w = vis.shape[:2]
    v, g = _gray(vis), _gray(ir)
    warped = cv2.warpPerspective(g, hom, (w, h), flags=cv2.INTER_LINEAR)
    inside = cv2.warpPerspective(np.ones_like(g), hom, (w, h), flags=cv2.INTER_NEAREST)
    inside = cv2.erode(inside, np.ones((9, 9), np.uint8)) > 0.5
    corr = np.corrcoef(_gradient_magnitude(v, 1.5)[inside], _gradient_magnitude(warped, 1.5)[inside])[0, 1]
    return float(corr), _mutual_information(v[inside], warped[inside])


def sheet(vis: np.ndarray, ir: np.ndarray, hom: np.ndarray) -> np.ndarray:
    h, w = vis.shape[:2]
    rows = []
    for m, label in ((np.eye(3), "set's registration (identity)"), (hom, "rtfuse estimate")):
        over = edge_overlay(vis, cv2.warpPerspective(ir, m, (w, h)))
        over = cv2.resize(over, (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST)
        cv2.putText(over, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 0), 2)
        rows.append(over)
    return np.vstack(rows)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sets", default="roadscene,m2vd")
    p.add_argument("--per-set", type=int, default=10)
    p.add_argument("--sheet", nargs=2, metavar=("NAME", "PNG"))
    args = p.parse_args()
    torch.set_num_threads(2)
    rows = []
    for s, n, v, g in _pairs(DEFAULT_DATA, args.per_set):
        if s not in args.sets.split(","):
            continue
        try:
            hom = calib.estimate([(v, g)]).homography
        except RtfuseError:
            print(json.dumps({"set": s, "name": n, "refused": True}), flush=True)
            continue
        (ci, mi_i), (ce, mi_e) = alignment_measures(v, g, np.eye(3)), alignment_measures(v, g, hom)
        rows.append({"set": s, "name": n, "own_offset_px": round(calib.corner_error(hom, np.eye(3), (g.shape[1], g.shape[0])), 2),
                     "gradient_corr": [round(ci, 4), round(ce, 4)], "mutual_information": [round(mi_i, 4), round(mi_e, 4)]})
        print(json.dumps(rows[-1]), flush=True)
        if args.sheet and n == args.sheet[0]:
            cv2.imwrite(args.sheet[1], cv2.cvtColor(sheet(v, g, hom), cv2.COLOR_RGB2BGR))
    for s in sorted({r["set"] for r in rows}):
        mine = [r for r in rows if r["set"] == s]
        print(json.dumps({"set": s, "pairs": len(mine),
                          "median_own_offset_px": round(float(np.median([r["own_offset_px"] for r in mine])), 2),
                          "estimate_preferred_by_gradient_corr": sum(r["gradient_corr"][1] > r["gradient_corr"][0] for r in mine),
                          "estimate_preferred_by_mutual_information": sum(r["mutual_information"][1] > r["mutual_information"][0] for r in mine)}))


if __name__ == "__main__":
    main()
