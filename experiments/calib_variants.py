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
def radii8(reg):
    """The block search starts at 8 fine-level pixels, then 4, 3 (the first form of the block fit)."""
    reg._FINE_RADII_PX = (8, 4, 3)


@variant
def graduated(reg):
    """Graduated non-convexity: the block fit's Cauchy scale shrinks with the window, 4, 2, 1, 1 px
    (a wide first scale has one basin, so where the fit ends depends on the blocks, not the start)."""
    reg._FINE_CAUCHY_PX = (4.0, 2.0, 1.0, 1.0)


@variant
def back_check(reg):
    """Blocks whose matched infrared content, searched for in the visible field, does not come back
    within 1 px of where it started are dropped (forward-backward consistency)."""
    import cv2

    from rtfuse.calib.local import BLOCK_PX, BlockShifts

    forward = reg.local.__dict__.setdefault("_forward_shifts", reg.local.block_shifts)

    def checked(fixed, moving, radius, block=BLOCK_PX, **kwargs):
        found = forward(fixed, moving, radius, block, **kwargs)
        fixed, moving = np.float32(fixed), np.float32(moving)
        padded = np.pad(fixed, ((radius, radius), (radius, radius), (0, 0)))
        keep = []
        for (cx, cy), (dx, dy) in zip(found.centres, found.shifts):
            x0, y0 = round(cx - (block - 1) / 2), round(cy - (block - 1) / 2)
            mx, my = x0 + round(dx), y0 + round(dy)  # the matched content's corner in moving
            back = cv2.matchTemplate(padded[my:my + block + 2 * radius, mx:mx + block + 2 * radius],
                                     moving[my:my + block, mx:mx + block], cv2.TM_CCORR_NORMED)
            by, bx = np.unravel_index(int(np.argmax(back)), back.shape)
            keep.append(abs(bx - radius + round(dx)) <= 1 and abs(by - radius + round(dy)) <= 1)
        keep = np.array(keep, bool).reshape(-1)
        return BlockShifts(found.centres[keep], found.shifts[keep])

    reg.local.block_shifts = checked


@variant
def tukey(reg):
    """The block fit weighs blocks by Tukey's biweight (zero beyond 4 Cauchy scales) instead of
    Cauchy's: blocks of another depth lose all their pull, the fit keeps the dominant surface and
    its corner deviation is that surface's."""
    reg.local.robust_weight = lambda res2: np.clip(1 - res2 / 16, 0, None) ** 2


@variant
def perspective_prior(reg):
    """A zero-mean Gaussian prior of sd $PERSPECTIVE_SD (normalised units) on the two perspective
    entries of the block fit, against a data term whose block count is divided by $BLOCKS_PER_REGION
    (residuals of blocks on one object are not independent)."""
    import os

    from rtfuse.calib import local

    sd = float(os.environ.get("PERSPECTIVE_SD", "0.01"))
    per_region = float(os.environ.get("BLOCKS_PER_REGION", "1"))

    def fit(src, dst, start, scale, iterations=30):
        params = (start / start[2, 2]).ravel()[:8].astype(np.float64)
        prior = np.zeros(8)
        prior[6:] = 1 / sd**2
        for _ in range(iterations):
            proj, jac = local.project(params, src)
            res = (proj - dst) / scale
            weight = 1 / (1 + (res**2).sum(axis=1)) / per_region
            normal = np.einsum("n,nki,nkj->ij", weight, jac, jac) / scale**2 + np.diag(prior)
            gradient = np.einsum("n,nki,nk->i", weight, jac, res) / scale + prior * params
            step = np.linalg.solve(normal, -gradient)
            params = params + step
            if np.abs(step).max() < 1e-10:
                break
        return plain(src, dst, np.append(params, 1.0).reshape(3, 3), scale, iterations=0)  # weights, deviation

    plain = local.robust_homography
    reg.local.robust_homography = fit


@variant
def multistart(reg):
    """The product, with every search candidate also fitted on the fine level: how far from the
    winner's fit each ends and how much lower its middle-level score was (a stability check)."""
    from types import SimpleNamespace

    def register_pair(vis, ir):
        pyramid = reg._Pyramid.build(vis, ir)
        refined = []
        for hom in reg._global_search(pyramid.levels[0]):
            params = reg._to_params(hom, pyramid.vis_px, pyramid.ir_px)
            for level, (_, _, iterations, perspective) in zip(pyramid.levels, reg._LEVELS):
                params = reg._optimise(level, params, iterations, perspective)
            refined.append((reg._ngf_score(params, pyramid.levels[-2]).item(), params))
        refined.sort(key=lambda r: -r[0])  # the product's winner first
        fits = [reg._fit_fine([pyramid], p) for _, p in refined]
        homs = [reg._from_params(f.params, pyramid.vis_px, pyramid.ir_px) for f in fits]
        return SimpleNamespace(
            homography=homs[0], correlation=reg._ngf_score(fits[0].params, pyramid.fine).item(), contrast=0.0,
            blocks=fits[0].blocks, corner_sd_px=fits[0].corner_sd_px,
            rivals=[[round(refined[0][0] - sc, 4), round(reg.corner_error(h, homs[0], pyramid.ir_px), 2)]
                    for (sc, _), h in zip(refined[1:], homs[1:])])

    reg.register_pair = register_pair


def internal_warps(size):
    """The identity and the two fixed warps a single pair is also registered under (self-ensemble)."""
    from rtfuse.calib.register import _SMOOTHING_RANGE  # the same range the product smooths over
    from rtfuse.calib.synthetic import draw_warp

    return [np.eye(3)] + [draw_warp(np.random.default_rng(k), size, _SMOOTHING_RANGE) for k in (1, 2)]


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
        **({"rivals_u": u.rivals, "rivals_w": w.rivals} if hasattr(w, "rivals") else {}),
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
