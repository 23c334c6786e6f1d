"""`rtfuse bench`: backends side by side (latency, FPS, speed-ups, plan-switch time)."""

from __future__ import annotations

import argparse

from rtfuse import defaults
from rtfuse.cli._args import frame_size

HELP = "benchmark the inference backends side by side at several frame sizes"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", action="append", choices=defaults.BACKENDS,
                   help="backend to include (repeatable; default: compiled, aoti and tensorrt where available)."
                        " Eager dense and eager sparse are always timed as the baselines")
    p.add_argument("--size", action="append", type=frame_size, metavar="WxH",
                   help="frame size (repeatable; default 320x256, 640x480, 1280x1024)")
    p.add_argument("--precision", action="append", choices=defaults.PRECISIONS,
                   help="precision of the compiled backends (repeatable; default fp32)")
    p.add_argument("--repeat", type=int, default=10, help="timed frames per engine (default 10)")
    p.add_argument("--checkpoint", help="model checkpoint (default: the packaged weights)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--workdir", default="export/bench", help="where exported benchmark engines go")
    p.add_argument("--json", metavar="OUT.json", help="write the report as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from rtfuse.engine.bench import SIZES, benchmark, table
    from rtfuse.fuser import Fuser
    from rtfuse.paths import check_output

    if args.json:
        check_output(args.json)
    fuser = Fuser.from_checkpoint(args.checkpoint, args.device) if args.checkpoint else Fuser.default(args.device)
    model = fuser.model
    g = torch.Generator().manual_seed(0)
    plans = tuple(model.plan(torch.randn(1, model.cfg.deg_dim, generator=g).to(args.device)) for _ in range(2))
    bar = tqdm(desc="bench", bar_format="{desc}", leave=False)
    report = benchmark(
        model, plans, model_hash=fuser.model_hash, sizes=tuple(args.size or SIZES),
        backends=tuple(args.backend or ("compiled", "aoti", "tensorrt")), precisions=tuple(args.precision or ("fp32",)),
        repeat=args.repeat, device=args.device, workdir=args.workdir, on_progress=bar.set_description_str,
    )
    bar.close()
    print(table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    return 0
