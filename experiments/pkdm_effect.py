"""What PKDM does to the visible input under each robustness cell: mean absolute error against the
clean visible image of the degraded input and after each pre-enhancement stage (dehaze, low light,
derain; the last is PKDM's output), plus the labels DAGM gives the degraded pairs. Same inputs
as bench/robustness.py (degradations seeded by name).

    python experiments/pkdm_effect.py --data ../shared/data/msrs --data ../shared/data/llvip --limit 3 \
        [--checkpoint rtfuse/weights/rt.pt]

Prints JSON (per cell: the MAEs, the chroma (Cb, Cr) MAE of the input and of PKDM's output,
label counts, mean stage strengths) and a markdown table. Read with the robustness table: a
pre-enhancement may raise fusion scores while moving the visible image away from the clean one
(e.g. by adding contrast), and the other way round.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from robustness import CELLS

from rtfuse.color import as_rgb, rgb_to_ycbcr
from rtfuse.evaluate import degrade_sources
from rtfuse.fuser import Fuser, prepare_infrared, prepare_visible
from rtfuse.imageio import pair_folders, read_image, to_float01
from rtfuse.model.pkdm import STAGES, blend


def visible_errors(fuser: Fuser, vis: np.ndarray, ir: np.ndarray, cell: str, name: str) -> dict:
    """MAE against the clean visible image of the degraded input and after each PKDM stage."""
    deg_vis, deg_ir = degrade_sources(vis, ir, cell, name)
    v, i = prepare_visible(deg_vis), prepare_infrared(deg_ir)
    plan = fuser.plan_for(v, i)
    v3 = as_rgb(v)
    clean = torch.from_numpy(to_float01(vis if vis.ndim == 3 else np.repeat(vis[..., None], 3, axis=2)))
    clean = clean.permute(2, 0, 1)[None]
    pkdm = fuser.model.pkdm
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []  # (stage input, stage output), in the model's order
    hooks = [stage.register_forward_hook(lambda _m, args, out: seen.append((args[0], out)))
             for stage in (pkdm.dehaze, pkdm.lowlight, pkdm.derain)]
    try:
        with torch.inference_mode():
            pkdm(v3, i, v3.new_tensor([plan.stage_strengths]))
    finally:
        for hook in hooks:
            hook.remove()
    errors = {"input": float((v3 - clean).abs().mean())}
    for stage, (before, after), strength in zip(STAGES, seen, plan.stage_strengths):
        enhanced = blend(before, after, torch.tensor([strength]))  # after the loop: PKDM's output
        errors[stage] = float((enhanced - clean).abs().mean())
    enhanced = enhanced.clamp(0.0, 1.0)
    clean_chroma = rgb_to_ycbcr(clean)[:, 1:]
    chroma = {name: float((rgb_to_ycbcr(img)[:, 1:] - clean_chroma).abs().mean())
              for name, img in (("input", v3), ("pkdm", enhanced))}
    return {"mae": errors, "chroma": chroma, "label": plan.label, "blend": plan.stage_strengths}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", action="append", required=True, help="folders with vi/ and ir/ (repeatable)")
    p.add_argument("--limit", type=int, default=3, help="pairs per dataset (default 3, as in the model card's robustness table)")
    p.add_argument("--checkpoint", help="weights (default: the shipped ones)")
    p.add_argument("--cells", default=";".join(CELLS), help="';'-separated degradation specs")
    args = p.parse_args(argv)
    fuser = Fuser.from_checkpoint(args.checkpoint) if args.checkpoint else Fuser.default()
    if not fuser.model.cfg.pkdm:
        p.error("this model has no PKDM")
    pairs = []
    for data in args.data:
        folders = pair_folders(Path(data) / "vi", Path(data) / "ir")
        pairs += [(v, i) for v, i in folders.pairs[: args.limit]]
    report = {}
    for cell in args.cells.split(";"):
        rows = [visible_errors(fuser, read_image(v), read_image(i, gray=True), cell, v.name) for v, i in pairs]
        report[cell] = {
            "pairs": len(rows),
            "mae": {k: float(np.mean([r["mae"][k] for r in rows])) for k in rows[0]["mae"]},
            "chroma": {k: float(np.mean([r["chroma"][k] for r in rows])) for k in rows[0]["chroma"]},
            "labels": dict(Counter(r["label"] for r in rows).most_common()),
            "strengths": dict(zip(STAGES, np.mean([r["blend"] for r in rows], axis=0).round(3).tolist())),
        }
        print(f"{cell}: {report[cell]}", file=sys.stderr)
    lines = ["| degradation | MAE input | after dehaze | after low light | after derain (PKDM output) "
             "| chroma MAE input | chroma MAE PKDM output | DAGM labels | strengths dehaze / low light / derain |",
             "|---|---|---|---|---|---|---|---|---|"]
    for cell, r in report.items():
        labels = ", ".join(f"{k} {n}" for k, n in r["labels"].items())
        strengths = " / ".join(f"{v:.2f}" for v in r["strengths"].values())
        mae = " | ".join(f"{v:.3f}" for v in r["mae"].values())
        chroma = " | ".join(f"{v:.4f}" for v in r["chroma"].values())
        lines.append(f"| {cell} | {mae} | {chroma} | {labels} | {strengths} |")
    print(json.dumps(report, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
