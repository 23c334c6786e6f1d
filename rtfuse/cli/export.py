"""`rtfuse export`: compile the folded network into an on-disk engine (AOTInductor or TensorRT)."""

from __future__ import annotations

import argparse

from rtfuse import defaults

HELP = "export a compiled engine (aoti or tensorrt) for one frame size, with a JSON sidecar"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", required=True, choices=defaults.EXPORTABLE_BACKENDS)
    p.add_argument("--height", type=int, required=True, help="frame height the engine takes (one size per engine)")
    p.add_argument("--width", type=int, required=True, help="frame width the engine takes")
    p.add_argument("--precision", choices=defaults.PRECISIONS,
                   help="default: fp32 for aoti, fp16 for tensorrt; bf16 is the CPU option, fp16 the GPU one")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda for tensorrt, else cpu)")
    p.add_argument("--stages", default="all", metavar="all|none|NAMES",
                   help="PKDM enhancement stages compiled in: all (default), none, or a comma list of "
                        "dehaze,lowlight,derain; leaving out stages a clean scene's plan gates off makes the "
                        "engine faster, and it then refuses plans that need them")
    p.add_argument("--checkpoint", help="model checkpoint (default: the packaged weights)")
    p.add_argument("-o", "--out", required=True, metavar="export/NAME", help="writes NAME.pt2 (or .ep) and NAME.json")


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from rtfuse.engine import artifact_paths, export_engine, require_tensorrt
    from rtfuse.engine.fold import parse_stages
    from rtfuse.errors import RtfuseError
    from rtfuse.fuser import Fuser
    from rtfuse.paths import check_outputs

    if args.height < 1 or args.width < 1:
        raise RtfuseError(f"--height and --width must be positive, got {args.height}x{args.width}")
    stages = parse_stages(args.stages)
    check_outputs(*artifact_paths(args.out, args.backend))
    device = args.device or ("cuda" if args.backend == "tensorrt" else "cpu")
    if args.backend == "tensorrt":
        require_tensorrt(device)
    fuser = Fuser.from_checkpoint(args.checkpoint, device) if args.checkpoint else Fuser.default(device)
    g = torch.Generator().manual_seed(0)
    plan = fuser.model.plan(torch.randn(1, fuser.model.cfg.deg_dim, generator=g).to(device))
    print(f"compiling {args.backend} engine for {args.width}x{args.height} (takes minutes on a small CPU)")
    t0 = time.perf_counter()
    artifact, sidecar = export_engine(
        args.backend, fuser.model, plan, args.out, height=args.height, width=args.width,
        model_hash=fuser.model_hash, device=device, precision=args.precision, stages=stages,
    )
    print(f"wrote {artifact} and {sidecar} in {time.perf_counter() - t0:.0f} s")
    return 0
