"""Scene-based registration against references that exist (issue 26); prints JSON.

Real pairs carry their own parallax, so they cannot be the reference alone. Two references are:

- *known warp*: the infrared frame of a registered pair is warped by a drawn rig misalignment K
  (rotation up to 5 deg, scale 0.9-1.1, shift up to 8%, mild perspective); the estimate for the
  warped pair should be K^-1 (``corner_error_px``: mean distance of the four frame corners).
- *self-consistency*: the estimate for the warped pair composed with K must equal the estimate for
  the unwarped pair, whatever that pair's own offset (``self_consistency_px``).

Single pairs come from MSRS, RoadScene, TNO, LLVIP and frames of each m2vd clip; the clip mode
warps 5 frames of an m2vd clip by one drawn K and estimates from all five. An accepted estimate
more than ``WRONG_SELF_PX`` from self-consistency (``WRONG_PX`` from the known warp where the
unwarped pair was refused) is a *silent wrong warp*, and so is any accepted *unrelated* pair (the
visible frame of one set with the infrared frame of another): there must be none.

    .venv/bin/python bench/calib_warps.py [--per-set 10] [--clip-warps 20] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGE_SETS = ("msrs", "roadscene", "tno", "llvip")
WRONG_PX = 10.0  # against the known warp (it includes the pair's own offset, up to several px)
WRONG_SELF_PX = 5.0  # self-consistency: the pair's own offset cancels


def _pairs(data: Path, per_set: int) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    from rtfuse.calib import load_pairs
    from rtfuse.imageio import pair_folders, read_image
    from rtfuse.video import list_videos, spread_indices

    out = []
    for name in IMAGE_SETS:
        found = pair_folders(data / name / "vi", data / name / "ir")
        for i in spread_indices(len(found.pairs), per_set):
            vis, ir = found.pairs[i]
            out.append((name, vis.name, read_image(vis), read_image(ir, gray=True)))
    clips = list_videos(data / "video" / "m2vd" / "vi")
    per_clip = max(1, round(per_set / len(clips)))
    for clip in clips:
        for k, (v, g) in enumerate(load_pairs(clip, data / "video" / "m2vd" / "ir" / clip.name, per_clip)):
            out.append(("m2vd", f"{clip.stem}#{k}", v, g))
    return out


def _estimate(pairs):
    from rtfuse import calib
    from rtfuse.errors import RtfuseError

    t0 = time.perf_counter()
    try:
        cal = calib.estimate(pairs)
        return cal, None, time.perf_counter() - t0
    except RtfuseError as exc:
        return None, str(exc), time.perf_counter() - t0


def _case(job: tuple[str, str, list, np.ndarray, int]) -> dict:
    """One warped case: estimates for the unwarped and the warped pairs, errors against K."""
    import torch

    from rtfuse import calib
    from rtfuse.calib.synthetic import warp_frame

    torch.set_num_threads(1)
    group, name, pairs, warp, _ = job
    size = (pairs[0][1].shape[1], pairs[0][1].shape[0])
    plain, _, _ = _estimate(pairs)
    warped, error, seconds = _estimate([(v, warp_frame(g, warp)) for v, g in pairs])
    row = {"set": group, "name": name, "registered": warped is not None, "seconds": round(seconds, 2)}
    if warped is None:
        row["error"] = error
        return row
    row["corner_error_px"] = round(calib.corner_error(warped.homography, np.linalg.inv(warp), size), 3)
    row["correlation"] = min(warped.stats.edge_correlation)
    row["margin"] = min(warped.stats.peak_contrast)
    row["blocks"] = warped.stats.blocks
    row["corner_sd_px"] = warped.stats.corner_sd_px
    if plain is not None:
        row["self_consistency_px"] = round(calib.corner_error(warped.homography @ warp, plain.homography, size), 3)
        row["own_offset_px"] = round(calib.corner_error(plain.homography, np.eye(3), size), 3)
    return row


def _wrong(row: dict) -> bool:
    """An accepted estimate that is wrong: inconsistent with the unwarped pair's, or far from K^-1."""
    if "self_consistency_px" in row:
        return row["self_consistency_px"] > WRONG_SELF_PX
    return row.get("corner_error_px", 0) > WRONG_PX


def _summary(rows: list[dict]) -> dict:
    def median(key: str) -> float | None:
        vals = [r[key] for r in rows if key in r]
        return round(float(np.median(vals)), 3) if vals else None

    return {
        "cases": len(rows),
        "registered": sum(r["registered"] for r in rows),
        "registered_fraction": round(sum(r["registered"] for r in rows) / max(len(rows), 1), 3),
        "silent_wrong": sum(_wrong(r) for r in rows),
        "median_corner_error_px": median("corner_error_px"),
        "median_self_consistency_px": median("self_consistency_px"),
        "median_own_offset_px": median("own_offset_px"),
        "median_seconds": median("seconds"),
    }


def measure(data: Path, per_set: int, clip_warps: int, jobs: int, seed: int) -> dict:
    from rtfuse.calib import load_pairs
    from rtfuse.calib.synthetic import draw_warp
    from rtfuse.video import list_videos

    rng = np.random.default_rng(seed)
    single = [(s, n, [(v, g)], draw_warp(rng, (g.shape[1], g.shape[0])), 0) for s, n, v, g in _pairs(data, per_set)]
    clips = [(clip.stem, load_pairs(clip, data / "video" / "m2vd" / "ir" / clip.name, 5))
             for clip in list_videos(data / "video" / "m2vd" / "vi")]
    clip_jobs = [
        ("m2vd-5", f"{clips[k % len(clips)][0]}/warp{k}", clips[k % len(clips)][1], draw_warp(rng, (640, 480)), 0)
        for k in range(clip_warps)
    ]
    # unrelated: the visible frame of one pair with the infrared frame of another set's pair
    unrelated = [("unrelated", f"{a[1]}+{b[1]}", [(a[2][0][0], b[2][0][1])], b[3], 0)
                 for a, b in zip(single[::7], single[3::7]) if a[0] != b[0]]
    with ProcessPoolExecutor(jobs) as pool:
        rows = list(pool.map(_case, single + clip_jobs + unrelated))
    single = _summary([r for r in rows if r["set"] not in ("m2vd-5", "unrelated")])
    wrongly = [r["name"] for r in rows if r["set"] == "unrelated" and r["registered"]]
    by_set = {s: _summary([r for r in rows if r["set"] == s]) for s in (*IMAGE_SETS, "m2vd", "m2vd-5")}
    clip = by_set["m2vd-5"]
    return {
        "single_pairs": single,
        "by_set": by_set,
        "unrelated": {"cases": sum(r["set"] == "unrelated" for r in rows), "registered": wrongly},
        "acceptance": {
            "single: registered >= 90%, no silent wrong warp": single["registered_fraction"] >= 0.9 and single["silent_wrong"] == 0,
            "single: self-consistency median <= 1.0 px": (single["median_self_consistency_px"] or 99) <= 1.0,
            "roadscene: corner error median <= 2 px": (by_set["roadscene"]["median_corner_error_px"] or 99) <= 2.0,
            "m2vd: corner error median <= 2 px": (by_set["m2vd"]["median_corner_error_px"] or 99) <= 2.0,
            "unrelated pairs: all refused": not wrongly,
            "m2vd 5 frames: registered >= 98%, self-consistency median <= 0.7 px": clip["registered_fraction"] >= 0.98
            and (clip["median_self_consistency_px"] or 99) <= 0.7,
        },
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--per-set", type=int, default=10, help="single pairs per set (m2vd: spread over its clips)")
    parser.add_argument("--clip-warps", type=int, default=20, help="drawn warps for the 5-frame m2vd cases")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(measure(args.data, args.per_set, args.clip_warps, args.jobs, args.seed), indent=1))


if __name__ == "__main__":
    main()
