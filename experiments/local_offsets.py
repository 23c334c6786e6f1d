"""How far apart the two frames of a 'registered' pair are, block by block (issue 26 research).

For each pair of the calibration bench (unwarped), the fine level's blocks find their local shift
of infrared against visible at the identity (``rtfuse.calib.local.block_shifts``, radius 12
fine-level px); printed per pair: blocks found, the median shift vector and the median shift
length in visible pixels. A set whose pairs are off by several pixels block by block cannot be a
reference to better than that: a known warp applied to its infrared adds to the pair's own offset.

    .venv/bin/python experiments/local_offsets.py [--per-set 10] > offsets.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
    moved, weight = reg._warp_ir(identity, level)
    ir_field = reg._orientation(*reg._gradients(moved), level.ir_eps) * weight
    found = local.block_shifts(reg._hwc(level.vis_field * weight), reg._hwc(ir_field), radius)
    to_vis = pyramid.vis_px[0] / level.vis_valid.shape[1]
    shifts = found.shifts * to_vis
    return {
        "blocks": len(shifts),
        "median_shift_px": np.round(np.median(shifts, axis=0), 2).tolist() if len(shifts) else None,
        "median_length_px": round(float(np.median(np.linalg.norm(shifts, axis=1))), 2) if len(shifts) else None,
    }


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
        print(json.dumps({"set": s, "pairs": len(lengths), "median_of_pair_medians_px": round(float(np.median(lengths)), 2),
                          "pairs_over_2px": sum(x > 2 for x in lengths)}))


if __name__ == "__main__":
    main()
