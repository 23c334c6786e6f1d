"""rtfuse info: model configuration, parameter count and cost per frame."""

from __future__ import annotations

import argparse

HELP = "print a model's configuration, parameter count and GMACs per frame"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="rt", help="registered model config (rt, base)")
    p.add_argument("--checkpoint", help="describe this checkpoint instead of a fresh model")
    p.add_argument("--height", type=int, default=480, help="frame height the cost is counted for (default 480)")
    p.add_argument("--width", type=int, default=640, help="frame width (default 640)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from rtfuse.checkpoint import load_checkpoint
    from rtfuse.model import create_model, fusion_macs

    meta = {}
    if args.checkpoint:
        model, meta = load_checkpoint(args.checkpoint)
    else:
        model = create_model(args.model)
    cfg = model.cfg
    total = sum(p.numel() for p in model.parameters())
    fusion_params = total - sum(p.numel() for p in model.dagm.parameters())
    macs = fusion_macs(model, args.height, args.width)
    print(f"model {cfg.name}")
    for key, value in asdict(cfg).items():
        if key != "extra":
            print(f"  {key:20s} {value}")
    print(f"parameters          {total:,} (fusion path {fusion_params:,}, DAGM {total - fusion_params:,})")
    print(f"GMAC per frame      {macs['fusion'] / 1e9:.3f} fusion path at {args.width}x{args.height} "
          f"(+ {macs['dagm'] / 1e9:.3f} DAGM once per clip), counted with torch.utils.flop_counter")
    for key, value in meta.items():
        print(f"  meta {key:15s} {value}")
    return 0
