"""What leaving PKDM stages out of a compiled engine buys: build time and per-frame time, side by side.

The `auto` engine compiles only the PKDM stages the clip's plan needs (a clean scene: none). This
builds an aoti engine for each stage set asked for, then times them round-robin on one thread
(the pipeline's engine thread) for a plan that gates every stage off, with the eager plan path
beside them. ``--engine`` adds artifacts built elsewhere (another commit's, say) to the same rounds.

    python bench/stage_sets.py [--size 640x480] [--stages all --stages none] [--engine export/x] [--rounds 8]

Prints one JSON object: per engine, build seconds, median ms per frame, max abs difference from eager.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rtfuse.engine import export_engine, load_engine, parse_stages
from rtfuse.fuser import Fuser


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="640x480", help="WxH (default 640x480)")
    p.add_argument("--stages", action="append", help="stage set to build (repeatable; default: all and none)")
    p.add_argument("--engine", action="append", default=[], help="an exported aoti artifact to time beside them")
    p.add_argument("--rounds", type=int, default=8, help="timing rounds, 5 frames per engine each (default 8)")
    args = p.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(1)

    fuser = Fuser.default()
    g = torch.Generator().manual_seed(1)
    vis, ir = torch.rand(1, 3, height, width, generator=g), torch.rand(1, 1, height, width, generator=g)
    plan = fuser.model.plan(torch.randn(1, fuser.model.cfg.deg_dim, generator=g))
    plan = dataclasses.replace(plan, stage_strengths=(0.0,) * len(plan.stage_strengths))  # a clean scene's plan

    engines, build_s = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.stages or ("all", "none"):
            t0 = time.perf_counter()
            stem = Path(tmp) / spec.replace(",", "+")
            export_engine("aoti", fuser.model, plan, stem, height=height, width=width, model_hash=fuser.model_hash,
                          stages=parse_stages(spec))
            build_s[f"stages {spec}"] = round(time.perf_counter() - t0, 1)
            engines[f"stages {spec}"] = load_engine(stem, fuser.model, plan, fuser.model_hash)
        for path in args.engine:
            engines[path] = load_engine(path, fuser.model, plan, fuser.model_hash)
        engines["eager"] = lambda v, i: fuser.model(v, i, plan=plan).fused

        with torch.inference_mode():
            reference = engines["eager"](vis, ir)
            error = {name: float((e(vis, ir) - reference).abs().max()) for name, e in engines.items()}
            times: dict[str, list[float]] = {name: [] for name in engines}
            for _ in range(args.rounds):
                for name, engine in engines.items():
                    t0 = time.perf_counter()
                    for _ in range(5):
                        engine(vis, ir)
                    times[name].append((time.perf_counter() - t0) / 5 * 1e3)
    print(json.dumps({
        "size": args.size, "threads": 1, "rounds": args.rounds,
        "engines": {name: {"build_s": build_s.get(name), "median_ms": round(statistics.median(t), 2),
                           "max_abs_err": error[name]} for name, t in times.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
