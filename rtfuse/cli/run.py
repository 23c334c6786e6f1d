"""`rtfuse run`: the live/replay fusion pipeline."""

from __future__ import annotations

import argparse

from rtfuse import defaults

from rtfuse.cli._args import add_engine_arguments, engine_options, frame_size

HELP = "run the fusion pipeline: capture, sync, fuse, publish/record, profile (synthetic scene by default)"


def configure(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("sources")
    src.add_argument("--vis", default="synthetic", help="cam0, video file, frame folder, URL or 'synthetic' (default)")
    src.add_argument("--ir", default="synthetic", help="same forms as --vis")
    src.add_argument("--mode", choices=["live", "replay"],
                     help="live: newest pair only; replay: every frame in order (default: replay for files/folders)")
    src.add_argument("--fps", type=float, help="frame rate of folder and synthetic sources (default 30)")
    src.add_argument("--rate", type=float, default=0.0,
                     help="replay: process at this many frames/s (default: as fast as possible)")
    src.add_argument("--frames", type=int, help="stop after N fused frames")
    src.add_argument("--duration", type=float, help="stop after S seconds")
    src.add_argument("--sync-tolerance", type=float, metavar="MS",
                     help="max time difference of a pair (default: half a frame)")
    src.add_argument("--resize", action="store_true", help="scale infrared to the visible size when they differ")
    src.add_argument("--calib", metavar="RIG.toml", help="register infrared to visible with a calibration file")
    src.add_argument("--retries", type=int, default=5,
                     help="reopen a failing source this many times (backoff) before giving up")
    syn = parser.add_argument_group("synthetic source")
    syn.add_argument("--size", type=frame_size, default=(640, 480), metavar="WxH", help="frame size (default 640x480)")
    syn.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene (default 0)")
    syn.add_argument("--degrade", metavar="SPEC", help="degradations, e.g. haze:0.6,low_light:0.3")
    syn.add_argument("--ir-bits", type=int, choices=[8, 16], default=8, help="16: radiometric-style infrared")
    eng = parser.add_argument_group("engine")
    eng.add_argument("--checkpoint", metavar="PT", help="model weights (default: packaged weights)")
    eng.add_argument("--plan-refresh", type=float, default=10.0, metavar="S",
                     help="recompute the expert plan every S seconds")
    eng.add_argument("--scene-threshold", type=float, default=defaults.SCENE_THRESHOLD,
                     help="thumbnail difference that counts as a scene change")
    add_engine_arguments(parser, default="auto")
    eng.add_argument("--threads", type=int, metavar="N",
                     help="torch threads for the engine (default: one fewer than the CPU cores, at least 1; "
                          "the capture threads decode on the core left)")
    out = parser.add_argument_group("outputs")
    out.add_argument("--publish", default=defaults.ENDPOINT, metavar="ENDPOINT",
                     help="ZeroMQ endpoint to bind (default %(default)s)")
    out.add_argument("--no-publish", action="store_true", help="do not publish")
    out.add_argument("--topic", default=defaults.TOPIC, help="ZeroMQ topic of the fused frames (default %(default)s)")
    out.add_argument("--encoding", choices=["raw", "jpeg"], default="raw",
                     help="frames as raw pixels (loopback, default) or JPEG (smaller, for networks)")
    out.add_argument("--jpeg-quality", type=int, default=90, help="with --encoding jpeg (default 90)")
    out.add_argument("--keys", metavar="DIR", help="CURVE key folder from `rtfuse keys` (needed off loopback)")
    out.add_argument("--insecure", action="store_true", help="allow a non-loopback endpoint without encryption")
    out.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                     help="wait for N subscribers before the first frame")
    out.add_argument("--wait-timeout", type=float, default=10.0, metavar="S",
                     help="with --wait-subscribers: give up after S seconds (default 10)")
    out.add_argument("--record", metavar="OUT.mkv",
                     help="record the fused stream (.mkv survives any stop, even a kill; .mp4 is playable once closed)")
    out.add_argument("--show", action="store_true", help="show the fused stream in a window (desktop OpenCV)")
    out.add_argument("--profile", metavar="REPORT.json", help="write the latency profile")


def run(args: argparse.Namespace) -> int:
    import os
    import sys
    import threading

    from tqdm import tqdm

    from rtfuse.errors import spell
    from rtfuse.fuser import Fuser
    from rtfuse.paths import check_outputs
    from rtfuse.cli._signals import signals_stop
    from rtfuse.pipeline import Pipeline, PipelineConfig
    from rtfuse.process import prepare_process
    from rtfuse.profiling import summary

    check_outputs(args.record, args.profile, inputs=(args.vis, args.ir))
    prepare_process(args.threads)

    cfg = PipelineConfig(
        vis=args.vis, ir=args.ir, mode=args.mode, fps=args.fps, rate=args.rate, frames=args.frames,
        duration=args.duration, sync_tolerance=args.sync_tolerance / 1e3 if args.sync_tolerance else None,
        resize=args.resize, calib=args.calib, checkpoint=args.checkpoint,
        publish=None if args.no_publish else args.publish, topic=args.topic, encoding=args.encoding,
        jpeg_quality=args.jpeg_quality, keys=args.keys, insecure=args.insecure,
        wait_subscribers=args.wait_subscribers, wait_timeout=args.wait_timeout, record=args.record, show=args.show,
        profile=args.profile, plan_refresh_s=args.plan_refresh, scene_threshold=args.scene_threshold,
        retries=args.retries, synthetic_size=args.size, synthetic_seed=args.seed,
        synthetic_degrade=args.degrade, synthetic_ir_bits=args.ir_bits,
    )
    opts = engine_options(args)
    fuser = Fuser.from_checkpoint(args.checkpoint, args.device, **opts) if args.checkpoint else Fuser.default(args.device, **opts)
    pipeline = Pipeline(cfg, fuser=fuser)
    bar = tqdm(total=cfg.frames, unit="frame", desc=f"rtfuse {pipeline.mode}", leave=False)
    lock = threading.Lock()

    def progress(n: int) -> None:
        with lock:
            if bar.total is None and pipeline.mode == "replay":  # the sources are open now: their lengths are known
                lengths = [src.length for src in pipeline.sources.values()]
                if all(length is not None for length in lengths):
                    bar.total = min([*lengths, *([cfg.frames] if cfg.frames else [])])
                    bar.refresh()
            bar.update(n - bar.n)

    try:
        with signals_stop(pipeline.stop) as interrupted:
            pipeline.run(on_frame=progress)
    finally:
        bar.close()
        if pipeline.report is not None:  # the summary of every run that started, failed ones too
            print(spell(summary(pipeline.report), args._options))
            if cfg.record:
                print(f"recorded {pipeline.report['meta']['recorded_frames']} frames to {cfg.record}")
            if cfg.profile:
                print(f"profile written to {cfg.profile}")
    if interrupted.is_set():
        # Everything is written and closed; skip the interpreter's teardown of torch, which takes
        # seconds on a busy machine, so that Ctrl-C returns the prompt at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
