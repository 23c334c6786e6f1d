"""Visual comparison sheet: sources, a degraded version, rtfuse's fusion of the degraded and of the
clean inputs, the classical baselines and the published methods' fusions of the clean inputs.

    python bench/comparison_sheet.py --data ../shared/data/tno --names 05,17,30 \
        --degrade haze:0.6,low_light:0.5 --out sheet.png [--checkpoint M.pt]

Rows are pairs; columns are labelled. Published outputs are read from DATA/fused/METHOD/NAME.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rtfuse.baselines import fuse_laplacian, fuse_max
from rtfuse.evaluate import degrade_sources
from rtfuse.fuser import Fuser
from rtfuse.imageio import read_image, write_image
from rtfuse.sheet import grid, tile


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--names", default="05,17,30", help="comma-separated stems")
    p.add_argument("--degrade", default="haze:0.6,low_light:0.5")
    p.add_argument("--checkpoint", help="default: the packaged weights")
    p.add_argument("--width", type=int, default=220)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    fuser = Fuser.from_checkpoint(args.checkpoint) if args.checkpoint else Fuser.default()
    methods = sorted(d.name for d in (args.data / "fused").iterdir() if d.is_dir()) if (args.data / "fused").is_dir() else []
    rows = []
    for stem in args.names.split(","):
        vis_path = next((args.data / "vi").glob(f"{stem}.*"))
        ir_path = next((args.data / "ir").glob(f"{stem}.*"))
        vis, ir = read_image(vis_path), read_image(ir_path, gray=True)
        dv, di = degrade_sources(vis, ir, args.degrade, stem)
        tiles = [
            tile(vis, args.width, f"{stem} visible"),
            tile(ir, args.width, f"{stem} infrared"),
            tile(dv, args.width, "degraded visible"),
            tile(di, args.width, "degraded infrared"),
            tile(fuser(dv, di), args.width, "rtfuse (degraded in)"),
            tile(fuser(vis, ir), args.width, "rtfuse (clean in)"),
            tile(fuse_max(vis, ir), args.width, "max (clean)"),
            tile(fuse_laplacian(vis, ir), args.width, "laplacian (clean)"),
        ]
        for m in methods:
            found = list((args.data / "fused" / m).glob(f"{stem}.*"))
            if found:
                tiles.append(tile(read_image(found[0]), args.width, f"{m} (clean)"))
        rows.append(tiles)
    sheet = grid(rows, per_row=9)
    write_image(args.out, sheet)
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]}); {fuser.source}; degradation {args.degrade}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
