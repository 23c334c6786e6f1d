"""rtfuse experts: expert activation heatmaps per degradation type."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "plot which experts each degradation type activates (layers x experts heatmaps)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="folder with ir/ and vi/ pairs (clean sources)")
    p.add_argument("--out", required=True, help="heatmap PNG; a JSON of the matrices is written beside it")
    p.add_argument("--checkpoint", help="model checkpoint (default: the packaged weights)")
    p.add_argument("--max-images", type=int, default=8, help="pairs to use (default 8)")
    p.add_argument("--severities", default="0.3,0.6,0.9", help="comma-separated severities per degradation")
    p.add_argument("--seed", type=int, default=0, help="seed of the degradations (default 0)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rtfuse.errors import RtfuseError
    from rtfuse.experts import activation_by_class, expert_names, layer_names, plot_heatmaps, routing_distance
    from rtfuse.fuser import Fuser
    from rtfuse.imageio import pair_folders, read_image, to_float01
    from rtfuse.paths import check_output

    data = Path(args.data)
    check_output(args.out, inputs=(data / "vi", data / "ir"))
    found = pair_folders(data / "vi", data / "ir")
    if not found.pairs:
        raise RtfuseError(f"{data}: no pairs in vi/ and ir/")
    pairs = found.pairs[: args.max_images]
    fuser = Fuser.from_checkpoint(args.checkpoint) if args.checkpoint else Fuser.default()
    severities = [float(s) for s in args.severities.split(",")]

    def load():
        for vis_path, ir_path in tqdm(pairs, desc="routing", unit="pair"):
            vis = read_image(vis_path)
            if vis.ndim == 2:
                vis = vis[..., None].repeat(3, 2)
            yield to_float01(vis), to_float01(read_image(ir_path, gray=True))

    mats = activation_by_class(fuser.model, load(), severities, seed=args.seed)
    distance = routing_distance(mats)
    rows = layer_names(fuser.model)
    title = f"{fuser.source}: {len(pairs)} pairs of {data.name}, severities {args.severities}; routing distance {distance:.3f}"
    plot_heatmaps(mats, rows, expert_names(fuser.model), args.out, title)
    report = {"source": fuser.source, "data": str(data), "pairs": len(pairs), "severities": severities,
              "layers": rows, "routing_distance": distance, "mean_gates": {k: v.tolist() for k, v in mats.items()}}
    json_path = Path(args.out).with_suffix(".json")
    json_path.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out} and {json_path}; mean total-variation distance between classes' routing: {distance:.3f}")
    return 0
