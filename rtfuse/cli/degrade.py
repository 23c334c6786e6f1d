"""`rtfuse degrade`: render a degradation gallery of a real pair, or write one degraded pair."""

from __future__ import annotations

import argparse

HELP = "degrade an IR/visible pair: labelled gallery of every degradation, or one degraded pair"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vis", required=True, help="visible image (RGB or gray)")
    parser.add_argument("--ir", required=True, help="infrared image registered to --vis (same size)")
    parser.add_argument("--out", help="gallery PNG: rows = degradations (incl. composites), columns = severities")
    parser.add_argument("--spec", help="degradations for one pair, e.g. haze:0.6,low_light:0.3 (with --out-vis/--out-ir)")
    parser.add_argument("--out-vis", help="where to write the degraded visible image (with --spec)")
    parser.add_argument("--out-ir", help="where to write the degraded infrared image (with --spec)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--severities", default="0.3,0.6,0.9", help="gallery columns (default 0.3,0.6,0.9)")
    parser.add_argument("--kinds", help="gallery rows, comma separated (default: every degradation and composite)")
    parser.add_argument("--tile-width", type=int, default=240, help="gallery tile width in pixels (default 240)")


def _floats(text: str) -> list[float]:
    from rtfuse.errors import RtfuseError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise RtfuseError(f"--severities {text!r}: expected comma-separated numbers in [0, 1]") from None


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from rtfuse import degrade
    from rtfuse.errors import RtfuseError
    from rtfuse.imageio import read_image, write_image
    from rtfuse.paths import check_outputs

    if not args.out and not args.spec:
        raise RtfuseError("nothing to do: give --out GALLERY.png and/or --spec SPEC --out-vis X --out-ir Y")
    if args.spec and not (args.out_vis and args.out_ir):
        raise RtfuseError("--spec needs both --out-vis and --out-ir")
    if (args.out_vis or args.out_ir) and not args.spec:
        raise RtfuseError("--out-vis/--out-ir need --spec, e.g. --spec haze:0.6")
    check_outputs(args.out, args.out_vis, args.out_ir, inputs=(args.vis, args.ir))
    vis = read_image(args.vis)
    if vis.ndim == 2:
        vis = np.repeat(vis[..., None], 3, axis=2)
    ir = read_image(args.ir, gray=True)
    if vis.dtype != np.uint8 or ir.dtype != np.uint8:
        raise RtfuseError(f"{args.vis}, {args.ir}: only 8-bit images are supported here")
    if vis.shape[:2] != ir.shape:
        raise RtfuseError(f"visible is {vis.shape[1]}x{vis.shape[0]} but infrared is {ir.shape[1]}x{ir.shape[0]} (WxH); register them first")

    if args.spec:
        vis_d, ir_d = degrade.degrade_pair(vis, ir, args.spec, seed=args.seed)
        write_image(args.out_vis, vis_d)
        write_image(args.out_ir, ir_d)
        print(f"wrote {args.out_vis} and {args.out_ir} ({args.spec}, seed {args.seed})")
    if args.out:
        rows = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else list(degrade.GALLERY_ROWS)
        severities = _floats(args.severities)
        degrade.normalise_spec([(kind, s) for kind in rows for s in severities])
        gallery = degrade.render_gallery(
            vis, ir, rows, severities, seed=args.seed, tile_width=args.tile_width,
            progress=lambda it: tqdm(it, desc="gallery", unit="row"),
        )
        write_image(args.out, gallery)
        print(f"wrote {args.out}: {len(rows)} rows x {len(severities)} severities (+ clean)")
    return 0

