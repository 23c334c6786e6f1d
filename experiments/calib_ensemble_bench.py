"""`bench/calib_warps.py` with single pairs registered as a self-ensemble (issue 26 research).

A single pair is registered as given and with its infrared frame under two fixed internal warps;
each estimate is mapped back through its warp. At least two must register and all that did must
agree within ``--max-spread`` px (largest pairwise corner distance), else the pair is refused; the
estimate is the mean of their corners. Several pairs go through the product's ``estimate``.

    .venv/bin/python experiments/calib_ensemble_bench.py [--max-spread 8] [--clip-warps 0] [--seed 0] > out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import calib_warps  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calib_variants import internal_warps  # noqa: E402

from rtfuse import calib  # noqa: E402
from rtfuse.calib import register as reg  # noqa: E402
from rtfuse.calib.synthetic import warp_frame  # noqa: E402
from rtfuse.errors import RtfuseError  # noqa: E402

SINGLE = calib.estimate


def ensemble(max_spread: float):
    def estimate(pairs, *args, **kwargs):
        if len(pairs) != 1:
            return SINGLE(pairs, *args, **kwargs)
        vis, ir = pairs[0]
        size = (ir.shape[1], ir.shape[0])
        warps = internal_warps(size)
        found, errors = [], []
        for i, k in enumerate(warps):
            try:
                cal = SINGLE([(vis, ir if i == 0 else warp_frame(ir, k))], *args, **kwargs)
                found.append((cal, cal.homography @ k))
            except RtfuseError as exc:
                errors.append(str(exc))
        if len(found) < 2:
            raise RtfuseError(f"registration failed: {len(found)} of 3 internal warps registered; " + "; ".join(errors[:1]))
        homs = [h for _, h in found]
        spread = max(reg.corner_error(a, b, size) for i, a in enumerate(homs) for b in homs[i + 1:])
        if spread > max_spread:
            raise RtfuseError(f"registration failed: unstable, estimates under internal warps disagree by {spread:.1f} px")
        hom, _, _ = reg._consensus(homs, size)
        return dataclasses.replace(found[0][0], homography=hom)

    return estimate


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--max-spread", type=float, default=8.0)
    p.add_argument("--per-set", type=int, default=10)
    p.add_argument("--clip-warps", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    calib.estimate = ensemble(args.max_spread)  # inherited by the forked pool workers
    print(json.dumps(calib_warps.measure(calib_warps.DEFAULT_DATA, args.per_set, args.clip_warps, args.jobs, args.seed), indent=1))


if __name__ == "__main__":
    main()
