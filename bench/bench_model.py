"""Eager time per frame of a model config (the per-frame fusion path with a fixed plan).

    python bench/bench_model.py [--model rt] [--height 480 --width 640] [--runs 20] [--threads 1 2]

Prints JSON: median and p90 milliseconds per frame for each thread count, GMACs, and the machine's
load average at the start (this machine is shared; compare runs side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from rtfuse.fuser import default_weights_path
from rtfuse.model import create_model, fusion_macs


def time_model(model, vis, ir, plan, runs: int) -> list[float]:
    with torch.inference_mode():
        for _ in range(3):
            model(vis, ir, plan=plan)
        out = []
        for _ in range(runs):
            t = time.perf_counter()
            model(vis, ir, plan=plan)
            out.append((time.perf_counter() - t) * 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="rt")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args(argv)

    torch.manual_seed(0)
    model = create_model(args.model).eval()
    vis, ir = torch.rand(1, 3, args.height, args.width), torch.rand(1, 1, args.height, args.width)
    with torch.inference_mode():
        plan = model.plan_for(vis, ir)
    report = {
        "model": args.model,
        "size": f"{args.width}x{args.height}",
        "gmac": round(fusion_macs(model, args.height, args.width)["fusion"] / 1e9, 3),
        "load_average": os.getloadavg()[0],
        "torch": str(torch.__version__),
        "weights": str(default_weights_path()),
        "eager_ms": {},
    }
    for n in args.threads:
        torch.set_num_threads(n)
        times = sorted(time_model(model, vis, ir, plan, args.runs))
        report["eager_ms"][f"{n}_threads"] = {
            "median": round(statistics.median(times), 2),
            "p90": round(times[int(0.9 * (len(times) - 1))], 2),
            "runs": args.runs,
        }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
