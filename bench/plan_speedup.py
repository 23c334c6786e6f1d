"""Does the compiled engine's speed-up hold for the plans real clips get?

`rtfuse bench` switches between plans drawn from random degradation vectors. Eager's cost depends
on which experts a plan picks (PyTorch's CPU depthwise kernels differ a lot between kernel shapes),
while the folded engine always runs the same static graph. This times eager sparse against a
loaded aoti artifact for the plan of a real 640x480 frame under each degradation class.

    python bench/plan_speedup.py --engine export/bench/aoti-640x480-fp32 [--clip 0111_1716] [--repeat 10]

Prints JSON rows (class, label the DAGM gave, eager ms, aoti ms, ratio) and the median ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from rtfuse.color import rgb_to_gray
from rtfuse.degrade import degrade_pair
from rtfuse.engine import EagerEngine, load_engine
from rtfuse.fuser import Fuser, prepare_infrared, prepare_visible
from rtfuse.video import read_video

DATA = Path(os.environ.get("RTFUSE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SPECS = ("clean", "haze:0.6", "low_light:0.6", "overexposure:0.6", "rain:0.6", "noise:0.6")


def median_ms(fn, vis: torch.Tensor, ir: torch.Tensor, repeat: int) -> float:
    fn(vis, ir)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(vis, ir)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True, help="aoti artifact for 640x480 (rtfuse export / rtfuse bench --workdir)")
    parser.add_argument("--clip", default="0111_1716")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    m2vd = DATA / "video" / "m2vd"
    vis0 = next(read_video(m2vd / "vi" / f"{args.clip}.mp4", max_frames=1))
    ir0 = rgb_to_gray(next(read_video(m2vd / "ir" / f"{args.clip}.mp4", max_frames=1)))
    fuser = Fuser.default()
    rows = []
    aoti = None
    with torch.inference_mode():
        for spec in SPECS:
            vis, ir = (vis0, ir0) if spec == "clean" else degrade_pair(vis0, ir0, spec, seed=0)
            plan = fuser.plan_for(vis, ir)
            v, i = prepare_visible(vis), prepare_infrared(ir)
            if aoti is None:
                aoti = load_engine(args.engine, fuser.model, plan, fuser.model_hash)
            aoti.set_plan(plan)
            eager = EagerEngine(fuser.model, plan)
            e_ms, a_ms = median_ms(eager, v, i, args.repeat), median_ms(aoti, v, i, args.repeat)
            rows.append({"input": spec, "label": plan.label, "eager_ms": round(e_ms, 1), "aoti_ms": round(a_ms, 1),
                         "ratio": round(e_ms / a_ms, 2)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"median_ratio": statistics.median(r["ratio"] for r in rows),
                      "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
