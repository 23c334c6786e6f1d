"""Pipeline benchmark: 640x480 replay of an m2vd clip with the shipped `rt` weights, publishing
raw frames on loopback. Reports sustained FPS, glass-to-glass p50/p99, pipeline overhead
(glass-to-glass minus inference) and per-stage p50 of every run, and the median FPS, as JSON.

    .venv/bin/python bench/bench_pipeline.py [--clip 0111_1716] [--frames 150] [--threads N] [--runs 5]
        [--backend aoti --engine export/bench/aoti-640x480-fp32]

Runs repeat in one process with the same engine (this machine's speed drifts: quote the median).

Like `rtfuse run`, it leaves one core to the decoders and keeps freed memory mapped
(``rtfuse.process.prepare_process``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import torch

from rtfuse.fuser import Fuser
from rtfuse.pipeline import Pipeline, PipelineConfig
from rtfuse.process import prepare_process

DATA = Path(os.environ.get("RTFUSE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clip", default="0111_1716")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--publish", default="tcp://127.0.0.1:*")
    parser.add_argument("--checkpoint", help="weights to run (default: the shipped ones)")
    parser.add_argument("--threads", type=int, help="engine torch threads (default: as `rtfuse run`, cores - 1)")
    parser.add_argument("--backend", default="eager", help="engine backend, as `rtfuse run --backend` (default eager)")
    parser.add_argument("--engine", help="exported artifact for aoti/tensorrt (default: built on first use)")
    parser.add_argument("--runs", type=int, default=1, help="repeat the replay this many times")
    args = parser.parse_args()
    kept = prepare_process(args.threads)
    m2vd = DATA / "video" / "m2vd"
    cfg = PipelineConfig(vis=str(m2vd / "vi" / f"{args.clip}.mp4"), ir=str(m2vd / "ir" / f"{args.clip}.mp4"),
                         frames=args.frames, publish=args.publish)
    opts = {"backend": args.backend, "engine": args.engine}
    fuser = Fuser.from_checkpoint(args.checkpoint, **opts) if args.checkpoint else Fuser.default(**opts)
    runs = [summarise(Pipeline(cfg, fuser=fuser).run()) for _ in range(args.runs)]
    print(json.dumps({
        "clip": args.clip, "size": "640x480", "model": f"rt ({args.backend}, CPU)", "trained_weights": fuser.trained,
        "torch_threads": torch.get_num_threads(), "keeps_freed_memory": kept,
        "fps_median": round(statistics.median(r["fps"] for r in runs), 2), "runs": runs,
    }, indent=1))


def summarise(report: dict) -> dict:
    return {
        "frames": report["frames"], "fps": round(report["fps"], 2),
        "glass_to_glass_ms": {k: round(report["glass_to_glass_ms"][k], 1) for k in ("p50", "p95", "p99")},
        "overhead_ms": {k: round(report["overhead_ms"][k], 2) for k in ("p50", "p95", "p99")},
        "pipeline_overhead_ms": {k: round(report["pipeline_overhead_ms"][k], 2) for k in ("p50", "p95", "p99")},
        "stage_p50_ms": {k: round(v["p50"], 2) for k, v in report["stages_ms"].items() if v},
        "first_frame_ms": round(report["first_frame_ms"]["glass_to_glass"], 1),
        "drops": report["drops"], "plan_refreshes": len(report["plan_refreshes"]),
    }


if __name__ == "__main__":
    main()
