"""How far apart the two frames of a 'registered' pair are, block by block (issue 26 research).

For each pair of the calibration bench (unwarped), the fine level's blocks find their local shift
of infrared against visible at the identity (``rtfuse.calib.local.block_shifts``, radius 12
fine-level px); printed per pair: blocks found, the median shift vector and the median shift
length in visible pixels. A set whose pairs are off by several pixels block by block cannot be a
reference to better than that: a known warp applied to its infrared adds to the pair's own offset.
Also per pair: the frame corners' distance from the identity (visible px) of a translation, a
similarity, an affine map and a homography fitted to those block shifts: how much each model's
extra parameters add at the corners, where the fit extrapolates.

    .venv/bin/python experiments/local_offsets.py [--per-set 10] > offsets.json
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

from rtfuse.calib import local  # noqa: E402
from rtfuse.calib import register as reg  # noqa: E402


def offsets(vis: np.ndarray, ir: np.ndarray, radius: int = 12) -> dict:
    pyramid = reg._Pyramid.build(vis, ir)
    level = pyramid.fine
    identity = torch.zeros(8, dtype=torch.float64)
    vis_field, ir_field = reg._fields(identity, level)
    found = local.block_shifts(reg._hwc(vis_field), reg._hwc(ir_field), radius)
    h, w = level.vis_valid.shape
    to_vis = pyramid.vis_px[0] / w
    shifts = found.shifts * to_vis
    row = {
        "blocks": len(shifts),
        "median_shift_px": np.round(np.median(shifts, axis=0), 2).tolist() if len(shifts) else None,
        "median_length_px": round(float(np.median(np.linalg.norm(shifts, axis=1))), 2) if len(shifts) else None,
    }
    if len(shifts) >= 8:
        src = (found.centres + 0.5) * [2 / w, 2 / h] - 1
        dst = (found.centres + found.shifts + 0.5) * [2 / w, 2 / h] - 1
        corners = np.float64([[-1, -1], [1, -1], [1, 1], [-1, 1]]).reshape(-1, 1, 2)

        def corner_px(m: np.ndarray) -> float:
            moved = cv2.perspectiveTransform(corners, m) - corners
            return round(float(np.linalg.norm(moved.reshape(4, 2) * [w / 2, h / 2] * to_vis, axis=1).mean()), 2)

        translation = np.eye(3)
        translation[:2, 2] = np.median(dst - src, axis=0)
        similarity, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
        affine, _ = cv2.estimateAffine2D(src, dst, method=cv2.LMEDS)
        homography = local.robust_homography(src, dst, np.eye(3), local.CAUCHY_SCALE_PX * 2 / w).homography
        row["own_corner_px"] = {"translation": corner_px(translation),
                                "similarity": corner_px(np.vstack([similarity, [0, 0, 1]])),
                                "affine": corner_px(np.vstack([affine, [0, 0, 1]])), "homography": corner_px(homography)}
    return row


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--per-set", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for s, n, v, g in _pairs(DEFAULT_DATA, args.per_set):
        rows.append({"set": s, "name": n, **offsets(v, g)})
        print(json.dumps(rows[-1]), flush=True)
    for s in sorted({r["set"] for r in rows}):
        lengths = [r["median_length_px"] for r in rows if r["set"] == s and r["median_length_px"] is not None]
        fits = [r["own_corner_px"] for r in rows if r["set"] == s and "own_corner_px" in r]
        print(json.dumps({"set": s, "pairs": len(lengths), "median_of_pair_medians_px": round(float(np.median(lengths)), 2),
                          "pairs_over_2px": sum(x > 2 for x in lengths),
                          "median_own_corner_px": {k: round(float(np.median([f[k] for f in fits])), 2) for k in fits[0]}}))


if __name__ == "__main__":
    main()
