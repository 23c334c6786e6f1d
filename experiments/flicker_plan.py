"""Is the per-clip expert plan worth having? Temporal flicker of a fused clip when the plan is
computed once per clip (the runtime) vs. freshly for every frame.

    python experiments/flicker_plan.py --data ../shared/data/video/m2vd --clip 0117_1605 [--checkpoint M.pt] [--max-frames 150]

Prints JSON rows of rtfuse.evaluate.evaluate_videos (flicker, lower is better) for both variants.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rtfuse.evaluate import evaluate_videos, video_table
from rtfuse.fuser import Fuser


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="folder with vi/SEQ.mp4 and ir/SEQ.mp4")
    p.add_argument("--clip", required=True, help="clip stem, e.g. 0117_1605")
    p.add_argument("--checkpoint")
    p.add_argument("--max-frames", type=int)
    args = p.parse_args(argv)

    fuser = Fuser.from_checkpoint(args.checkpoint) if args.checkpoint else Fuser.default()
    with tempfile.TemporaryDirectory() as tmp:
        for sub in ("vi", "ir"):
            (Path(tmp) / sub).mkdir()
            src = next((args.data / sub).glob(f"{args.clip}.*"))
            (Path(tmp) / sub / src.name).symlink_to(src.resolve())
        fusers = {
            "per-clip plan": fuser,  # has plan_for: planned on the first frame, as rtfuse run does
            "per-frame plan": lambda v, i: fuser(v, i),  # plans every frame afresh
        }
        rows, bad = evaluate_videos(tmp, fusers=fusers, max_frames=args.max_frames)
    print(json.dumps({"source": fuser.source, "clip": args.clip, "rows": rows, "bad": [b.__dict__ for b in bad]}, indent=1))
    print(video_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
