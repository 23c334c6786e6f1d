"""Time every fusion metric on one 640x480 image; prints JSON (median ms per metric and total).

    .venv/bin/python bench/bench_metrics.py [--convention matlab] [--runs 7]

Uses the first MSRS pair of ../shared/data (640x480) fused by the Laplacian baseline, or a
synthetic textured pair when the data is absent. The first run (numba compile/cache load) is
not counted. Wall time is what the 300 ms budget is about; CPU time (all threads of this
process) is printed too because it does not grow when other jobs share the two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from rtfuse.baselines import fuse_laplacian
from rtfuse.imageio import read_image
from rtfuse.metrics import METRIC_NAMES, compute_metrics, get_convention

DATA = Path(os.environ.get("RTFUSE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _pair() -> tuple[np.ndarray, np.ndarray, str]:
    msrs = DATA / "msrs"
    if (msrs / "vi").is_dir():
        name = sorted((msrs / "vi").iterdir())[0].name
        return read_image(msrs / "vi" / name), read_image(msrs / "ir" / name, gray=True), f"msrs/{name}"
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    base = 128 + 80 * np.sin(x / 9.0) * np.cos(y / 13.0)
    vis = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
    ir = np.clip(255 - base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
    return np.stack([vis] * 3, axis=2), ir, "synthetic"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--convention", default="matlab")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    vis, ir, source = _pair()
    fused = fuse_laplacian(vis, ir)
    conv = get_convention(args.convention)
    a, b, f = (conv.to_gray(x) for x in (ir, vis, fused))
    compute_metrics(ir, vis, fused, args.convention)  # warm-up: numba cache, allocator
    per_metric = {}
    for m in METRIC_NAMES:
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            conv.metrics[m](a, b, f)
            times.append((time.perf_counter() - t0) * 1000)
        per_metric[m] = round(statistics.median(times), 2)
    totals, cpu = [], []
    for _ in range(args.runs):
        t0, c0 = time.perf_counter(), time.process_time()
        compute_metrics(ir, vis, fused, args.convention)
        totals.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    print(json.dumps({
        "image": source, "size": f"{f.shape[1]}x{f.shape[0]}", "convention": args.convention, "runs": args.runs,
        "cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2),
        "ms_per_metric_median": per_metric, "ms_total_median": round(statistics.median(totals), 1),
        "ms_total_min": round(min(totals), 1), "cpu_ms_total_median": round(statistics.median(cpu), 1),
    }, indent=1))


if __name__ == "__main__":
    main()
