"""Scene registration variants on drawn warps (issue 26 research): raw estimates, no acceptance.

``base`` is the product's register_pair; each variant patches its module constants.

For each case: register_pair on the unwarped and the warped pair, corner error against the known
warp composed with the unwarped estimate (self-consistency), correlation and peak contrast.

    .venv/bin/python experiments/calib_variants.py VARIANT [--per-set 6] > out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from calib_warps import DEFAULT_DATA, _pairs  # noqa: E402

VARIANTS = {}


def variant(fn):
    VARIANTS[fn.__name__] = fn
    return fn


@variant
def base(reg):
    pass


@variant
def radii16(reg):
    """The block search starts wider: 16 fine-level pixels, then 8, 4, 3."""
    reg._FINE_RADII_PX = (16, 8, 4, 3)


@variant
def radii12(reg):
    reg._FINE_RADII_PX = (12, 6, 3)


def internal_warps(size):
    """The identity and the two fixed warps a single pair is also registered under (self-ensemble)."""
    from rtfuse.calib.synthetic import WarpRange, draw_warp

    limits = WarpRange(rotation_deg=3.0, scale=(0.95, 1.05), shift=0.04, perspective=0.01)
    return [np.eye(3)] + [draw_warp(np.random.default_rng(k), size, limits) for k in (1, 2)]


@variant
def self_ensemble(reg):
    """The pair registered as given and under two fixed internal warps, each mapped back; the
    consensus (medoid, mean corners of the agreeing ones) is the estimate, their spread a check."""
    from types import SimpleNamespace

    from rtfuse.calib.synthetic import warp_frame

    single = reg.__dict__.setdefault("_register_one", reg.register_pair)  # a worker patches once per job

    def ensemble(vis, ir):
        size = (ir.shape[1], ir.shape[0])
        warps = internal_warps(size)
        results = [single(vis, warp_frame(ir, k) if k is not warps[0] else ir) for k in warps]
        homs = [r.homography @ k for r, k in zip(results, warps)]
        hom, inliers, spread = reg._consensus(homs, size)
        pairwise = max(reg.corner_error(a, b, size) for i, a in enumerate(homs) for b in homs[i + 1:])
        return SimpleNamespace(homography=hom, correlation=min(r.correlation for r in results),
                               contrast=min(r.contrast for r in results), spread=round(pairwise, 2),
                               agree=len(inliers))

    reg.register_pair = ensemble


def _case(job):
    import torch

    from rtfuse import calib
    from rtfuse.calib import register as reg
    from rtfuse.calib.synthetic import warp_frame

    torch.set_num_threads(1)
    name, group, label, vis, ir, warp = job
    VARIANTS[name](reg)
    size = (ir.shape[1], ir.shape[0])
    t0 = time.perf_counter()
    u = reg.register_pair(vis, ir)
    w = reg.register_pair(vis, warp_frame(ir, warp))
    return {
        "set": group, "name": label, "seconds": round(time.perf_counter() - t0, 2),
        "known_px": round(calib.corner_error(w.homography, np.linalg.inv(warp), size), 2),
        "self_px": round(calib.corner_error(w.homography @ warp, u.homography, size), 2),
        "own_px": round(calib.corner_error(u.homography, np.eye(3), size), 2),
        "corr_w": round(w.correlation, 3), "contrast_w": round(w.contrast, 4),
        "corr_u": round(u.correlation, 3), "contrast_u": round(u.contrast, 4),
        **({"spread_u": u.spread, "spread_w": w.spread} if hasattr(w, "spread") else {}),
        **({"blocks_u": u.blocks, "blocks_w": w.blocks, "corner_sd_u": round(u.corner_sd_px, 2),
            "corner_sd_w": round(w.corner_sd_px, 2)} if hasattr(w, "blocks") else {}),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("variant", choices=sorted(VARIANTS))
    p.add_argument("--per-set", type=int, default=6)
    p.add_argument("--sets", default="msrs,roadscene,tno,llvip,m2vd")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from rtfuse.calib.synthetic import draw_warp

    rng = np.random.default_rng(args.seed)
    jobs = []
    for s, n, v, g in _pairs(DEFAULT_DATA, args.per_set):
        warp = draw_warp(rng, (g.shape[1], g.shape[0]))
        if s in args.sets.split(","):
            jobs.append((args.variant, s, n, v, g, warp))
    rows = []
    with ProcessPoolExecutor(2) as pool:
        for r in pool.map(_case, jobs):  # each row as soon as it and those before it are done
            rows.append(r)
            print(json.dumps(r), flush=True)
    for s in args.sets.split(","):
        sel = [r for r in rows if r["set"] == s]
        print(json.dumps({"set": s, **{k: float(np.median([r[k] for r in sel])) for k in ("known_px", "self_px", "own_px", "seconds")}}))


if __name__ == "__main__":
    main()
