"""`rtfuse calib`: estimate an IR-to-visible homography from frame pairs, or check one visually."""

from __future__ import annotations

import argparse

SCENE_FRAMES = 5  # spread over a clip: different content makes the consensus meaningful
TARGET_FRAMES = 20  # a target is missed in some frames (moving, cut off); the fit uses them all
HELP = "estimate the infrared-to-visible registration of a rig (TOML), or overlay edges to check one"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vis", required=True, help="visible frame, frame folder or video file")
    parser.add_argument("--ir", required=True, help="infrared frame, frame folder or video file")
    parser.add_argument("-o", "--output", help="calibration file to write, e.g. calib/RIG.toml")
    parser.add_argument("--target", metavar="KIND:COLSxROWS",
                        help="calibrate from a pattern both cameras see: chessboard:9x6 (inner corners) or circles:4x11 "
                        "(asymmetric grid); without it the scene's structure is registered")
    parser.add_argument("--frames", type=int,
                        help="frames taken from a video or folder, spread evenly (default 5; 20 with --target)")
    parser.add_argument("--check", metavar="TOML", help="instead of estimating: overlay edges using this calibration")
    parser.add_argument("--out", help="overlay PNG written by --check (visible edges green, IR edges magenta)")


def run(args) -> int:
    from tqdm import tqdm

    from rtfuse import calib
    from rtfuse.errors import RtfuseError
    from rtfuse.imageio import write_image
    from rtfuse.paths import check_outputs

    check_outputs(args.output, args.out, inputs=(args.vis, args.ir))
    target = calib.Target.parse(args.target) if args.target else None
    frames = args.frames or (TARGET_FRAMES if target else SCENE_FRAMES)
    pairs = calib.load_pairs(args.vis, args.ir, frames)
    if args.check:
        if not args.out:
            raise RtfuseError("--check needs --out overlay.png")
        cal = calib.Calibration.load(args.check)
        vis, ir = pairs[0]
        cal.check_sizes((vis.shape[1], vis.shape[0]), (ir.shape[1], ir.shape[0]))
        write_image(args.out, calib.edge_overlay(vis, cal.warper()(ir)))
        print(f"wrote {args.out}: visible edges green, warped infrared edges magenta, overlap white")
        return 0
    if not args.output:
        raise RtfuseError("give -o calib/RIG.toml (or --check FILE --out overlay.png)")
    steps = len(pairs) if target else len(pairs) + 1  # scene: each pair, then all of them together
    with tqdm(total=steps, desc="finding the target" if target else "registering", unit="step") as bar:
        cal = calib.estimate_from_target(pairs, target, bar.update) if target else calib.estimate(pairs, progress=bar.update)
    cal.save(args.output)
    print(f"wrote {args.output}: {cal.stats.summary()}")
    if not target and cal.stats.pairs_used == 1:
        print("note: registered from one pair; in a scene at several depths one homography is a compromise between "
              "them; several frames of the rig (a clip or a folder, --frames) pin it down better. Look at it: "
              "rtfuse calib --check FILE --vis ... --ir ... --out overlay.png")
    print("homography (IR -> visible pixels):")
    for row in cal.homography:
        print("  " + "  ".join(f"{v:12.6g}" for v in row))
    return 0
