"""Robustness table (the paper's Table 5, made reproducible): Qabf and VIF of fusing degraded inputs,
scored against the CLEAN sources, for rtfuse, its ablations and the classical baselines.

    python bench/robustness.py --model full=rtfuse/weights/rt.pt --model nopkdm=runs/nopkdm.pt \
        --model dense=runs/dense.pt --data ../shared/data/msrs --data ../shared/data/llvip --limit 10

Every method of a cell sees the same degraded inputs (degradations are seeded by image name).
``--night SEVERITY`` first renders every clean pair as a night scene (the visible image darkened as
by ``low_light`` at that severity, seeded by name), ``--ir-gain G`` scales its infrared (a thermal
camera set to a low output level, as MSRS's); those renditions are then the clean references the
cells degrade and score against (a validation set like the night sets, made from daylight pairs).
Prints JSON (per dataset, cell and method: mean Qabf, VIF and the image count) and a markdown table
of the means over all datasets; the best method per cell and metric is marked.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from rtfuse.baselines import BASELINES
from rtfuse.evaluate import degrade_sources, evaluate_folder, summarise
from rtfuse.fuser import Fuser
from rtfuse.imageio import pair_folders, read_image, write_image
from rtfuse_train import experiments  # noqa: F401  (experiments' checkpoints load here too)

CELLS = [f"{kind}:{sev}" for kind in ("haze", "low_light", "overexposure") for sev in (0.3, 0.6, 0.9)] + [
    f"haze:{sev},low_light:{sev}" for sev in (0.3, 0.6, 0.9)
]
METRICS = ["Qabf", "VIF"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT", help="rtfuse checkpoints (repeatable)")
    p.add_argument("--data", action="append", required=True, help="folders with vi/ and ir/ (repeatable)")
    p.add_argument("--limit", type=int, help="pairs per dataset")
    p.add_argument("--cells", default=";".join(CELLS), help="';'-separated degradation specs")
    p.add_argument("--night", type=float, metavar="SEVERITY", help="render the clean pairs as night scenes first")
    p.add_argument("--ir-gain", type=float, metavar="G", help="scale the clean infrared first (with --night)")
    p.add_argument("--json", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.ir_gain is not None and args.night is None:
        p.error("--ir-gain renders night scenes: give --night too")
    with tempfile.TemporaryDirectory() as tmp:
        folders = {d: Path(d) for d in args.data}
        if args.night is not None:
            gain = 1.0 if args.ir_gain is None else args.ir_gain
            tag = f"night {args.night}" + ("" if args.ir_gain is None else f", infrared x{gain}")
            folders = {f"{d} ({tag})": night_scenes(Path(d), Path(tmp) / str(k), args.night, args.limit, gain)
                       for k, d in enumerate(args.data)}
        return run(args, folders)


def night_scenes(data: Path, out: Path, severity: float, limit: int | None, ir_gain: float = 1.0) -> Path:
    """``data``'s pairs (the first ``limit``) as night scenes: visible darkened, infrared x ``ir_gain``."""
    (out / "vi").mkdir(parents=True)
    (out / "ir").mkdir()
    pairs = pair_folders(data / "vi", data / "ir").pairs
    for vis_path, ir_path in pairs[:limit] if limit else pairs:
        ir = read_image(ir_path, gray=True)
        vis, _ = degrade_sources(read_image(vis_path), ir, f"low_light:{severity}", f"night/{vis_path.stem}")
        write_image(out / "vi" / f"{vis_path.stem}.png", vis)
        write_image(out / "ir" / f"{vis_path.stem}.png", np.clip(np.rint(ir * ir_gain), 0, 255).astype(np.uint8))
    return out


def run(args: argparse.Namespace, folders: dict[str, Path]) -> int:
    """The cells on every folder (reported under its name); prints the JSON and the table."""
    fusers = {}
    for item in args.model:
        name, _, path = item.partition("=")
        fuser = Fuser.from_checkpoint(path)
        fusers[name] = lambda v, i, f=fuser: f(v, i, plan=f.plan_for(v, i))  # an image is its own clip
    fusers.update({name: fn for name, fn in BASELINES.items()})
    cells = args.cells.split(";")
    report: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for data, folder in folders.items():
        report[data] = {}
        for cell in cells:
            result = evaluate_folder(folder, fusers=fusers, names=METRICS, degrade=cell, limit=args.limit, workers=2)
            report[data][cell] = {s.method: {**s.means, "n": s.images} for s in summarise(result)}
            print(f"{data} {cell}: " + "  ".join(
                f"{m} Qabf {v['Qabf']:.3f} VIF {v['VIF']:.3f}" for m, v in report[data][cell].items()), file=sys.stderr)

    methods = list(fusers)
    lines = ["| degradation | " + " | ".join(f"{m} Qabf | {m} VIF" for m in methods) + " |",
             "|---|" + "---|" * (2 * len(methods))]
    for cell in cells:
        means = {m: {k: float(np.mean([report[d][cell][m][k] for d in report])) for k in METRICS} for m in methods}
        best = {k: max(methods, key=lambda m: means[m][k]) for k in METRICS}
        row = []
        for m in methods:
            for k in METRICS:
                text = f"{means[m][k]:.3f}"
                row.append(f"**{text}**" if best[k] == m else text)
        lines.append(f"| {cell} | " + " | ".join(row) + " |")
    print(json.dumps(report, indent=1))
    print("\n".join(lines))
    print("\n".join(verdicts(report, cells, methods, list(fusers)[: len(args.model)])))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def verdicts(report: dict, cells: list[str], methods: list[str], models: list[str]) -> list[str]:
    """Per model: the cells where it falls below plain averaging, and its mean over the cells beside
    every other method's (the acceptance of a model that must never do worse than averaging)."""
    means = {m: {k: float(np.mean([report[d][c][m][k] for d in report for c in cells])) for k in METRICS} for m in methods}
    out = ["", "mean over the cells: " + "; ".join(f"{m} Qabf {v['Qabf']:.3f} VIF {v['VIF']:.3f}" for m, v in means.items())]
    for model in models:
        below = [f"{c} {k}" for c in cells for k in METRICS
                 if np.mean([report[d][c][model][k] for d in report]) < np.mean([report[d][c]["mean"][k] for d in report])]
        ahead = [m for m in methods if m != model and means[model]["Qabf"] < means[m]["Qabf"]]
        best = sum(all(np.mean([report[d][c][model]["Qabf"] for d in report]) >= np.mean([report[d][c][m]["Qabf"] for d in report])
                       for m in methods if m not in models) for c in cells)
        out.append(f"{model}: below mean fusion in {len(below)} cell-metric(s){': ' + ', '.join(below) if below else ''}; "
                   f"mean Qabf {'below ' + ', '.join(ahead) if ahead else 'at or above every other method'}; "
                   f"Qabf at or above every baseline in {best} of {len(cells)} cells")
    return out


if __name__ == "__main__":
    sys.exit(main())
