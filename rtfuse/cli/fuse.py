"""rtfuse fuse: fuse one pair of images, or two folders paired by file name."""

from __future__ import annotations

import argparse
from pathlib import Path

from rtfuse import defaults
from rtfuse.cli._args import add_engine_arguments, engine_options

HELP = "fuse an IR/visible image pair, or two folders of pairs matched by name"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vis", required=True, help="visible image or folder")
    p.add_argument("--ir", required=True, help="infrared image or folder")
    p.add_argument("-o", "--out", required=True, help="output image (single pair) or folder")
    p.add_argument("--checkpoint", help="model checkpoint (default: the packaged weights)")
    p.add_argument("--resize", action="store_true", help="scale infrared to the visible size when they differ")
    p.add_argument("--calib", metavar="RIG.toml", help="warp infrared onto the visible frame with a rig calibration")
    p.add_argument("--plan-per-image", action="store_true",
                   help="folders: plan every image anew (default: plan again where the scene changes, as `rtfuse run` "
                        "does: each image of a folder of unrelated images, once per scene of a sequence)")
    p.add_argument("--scene-threshold", type=float, default=defaults.SCENE_THRESHOLD,
                   help="thumbnail difference that counts as a new scene (default %(default)s)")
    add_engine_arguments(p)


def _load_pair(vis_path: Path, ir_path: Path, resize: bool, calib=None):
    """calib: (Calibration, its warper) or None; the warper's remap maps are built once per run."""
    import cv2

    from rtfuse.imageio import check_same_size, read_image

    vis = read_image(vis_path)
    ir = read_image(ir_path, gray=True)
    if calib is not None:
        cal, warp = calib
        cal.check_sizes((vis.shape[1], vis.shape[0]), (ir.shape[1], ir.shape[0]))
        ir = warp(ir)
    if resize and vis.shape[:2] != ir.shape[:2]:
        ir = cv2.resize(ir, (vis.shape[1], vis.shape[0]), interpolation=cv2.INTER_LINEAR)
    check_same_size(vis, ir, what=vis_path.name)
    return vis, ir


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rtfuse.errors import RtfuseError
    from rtfuse.fuser import Fuser
    from rtfuse.imageio import pair_folders, write_image
    from rtfuse.paths import check_output
    from rtfuse.pipeline import scene_changed, scene_signature

    vis_in, ir_in, out = Path(args.vis), Path(args.ir), Path(args.out)
    if args.resize and args.calib:
        raise RtfuseError("--resize and --calib exclude each other")
    calib = None
    if args.calib:
        from rtfuse.calib import Calibration

        cal = Calibration.load(args.calib)
        calib = (cal, cal.warper())
    single = vis_in.is_file() and ir_in.is_file()
    if not single and not (vis_in.is_dir() and ir_in.is_dir()):
        raise RtfuseError(f"--vis {vis_in} and --ir {ir_in} must both be existing files or both be folders")
    found = None if single else pair_folders(vis_in, ir_in)
    if found is not None and not found.pairs:
        raise RtfuseError(f"no pairs with matching names in {vis_in} and {ir_in}")
    check_output(out, inputs=(vis_in, ir_in), folder=not single)
    opts = engine_options(args)
    fuser = Fuser.from_checkpoint(args.checkpoint, args.device, **opts) if args.checkpoint else Fuser.default(args.device, **opts)

    if single:
        vis, ir = _load_pair(vis_in, ir_in, args.resize, calib)
        write_image(out, fuser(vis, ir))
        print(f"wrote {out}")
        return 0
    failed: list[tuple[str, str]] = []
    plan, scene, plans = None, None, 0
    for vis_path, ir_path in tqdm(found.pairs, desc="fusing", unit="pair"):
        try:
            vis, ir = _load_pair(vis_path, ir_path, args.resize, calib)
            signature = scene_signature(vis, ir)
            if plan is None or args.plan_per_image or scene_changed(scene, signature, args.scene_threshold):
                plan, scene, plans = fuser.plan_for(vis, ir), signature, plans + 1
            write_image(out / f"{vis_path.stem}.png", fuser(vis, ir, plan=plan))
        except RtfuseError as exc:
            failed.append((vis_path.name, str(exc)))
    print(f"fused {len(found.pairs) - len(failed)} of {len(found.pairs)} pairs into {out} "
          f"({plans} expert plan{'' if plans == 1 else 's'})")
    for name, reason in failed:
        print(f"  failed {name}: {reason}")
    for p in found.missing_ir:
        print(f"  no infrared partner for {p}")
    for p in found.missing_vis:
        print(f"  no visible partner for {p}")
    return 1 if failed or found.missing_ir or found.missing_vis else 0
