"""rtfuse eval: score fused images or clips against their sources with named metric conventions."""

from __future__ import annotations

import argparse
from pathlib import Path

from rtfuse import defaults

# evaluate_folder's parameters that no single option of this command spells
PARAMETER_OPTIONS = {"fused_dirs": "--fused NAME=DIR", "fusers": "--ours or --baseline"}
HELP = "score fused outputs against their IR/visible sources (EN, SD, SF, AG, MI, VIF, Qabf, SSIM, SCD, CC, PSNR)"

BASELINE_NAMES = ("max", "mean", "laplacian")


def _named_dir(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, Path(folder)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset folder with ir/ and vi/ (images, or videos for the flicker mode)")
    p.add_argument("--suite", metavar="ROOT",
                   help="cross-camera suite: rtfuse and the baselines on every real set under ROOT (e.g. ../shared/data), "
                        "with a dominance verdict, images below mean fusion and a comparison sheet per set")
    p.add_argument("--out", default="eval_suite", help="suite mode: folder for the report, JSON and sheets (default: %(default)s)")
    p.add_argument("--no-video", action="store_true", help="suite mode: skip the flicker of whole M2VD clips")
    p.add_argument("--fused", type=_named_dir, action="append", default=[], metavar="NAME=DIR",
                   help="fused outputs of a method, files named like the sources (repeatable)")
    p.add_argument("--ours", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="fuse with rtfuse first (default: the packaged weights)")
    p.add_argument("--baseline", action="append", default=[], choices=BASELINE_NAMES,
                   help="also fuse with a classical baseline (repeatable)")
    p.add_argument("--baselines", action="store_true", help="all classical baselines: max, mean, laplacian")
    p.add_argument("--degrade", metavar="KIND:SEVERITY[,...]",
                   help="robustness mode: degrade the inputs of --ours/--baseline, score against the clean sources")
    p.add_argument("--convention", choices=defaults.METRIC_CONVENTIONS, default=defaults.METRIC_CONVENTION,
                   help="metric convention (default: cddfuse, whose Qabf has no equal-strength quirk; "
                        "matlab reproduces the published TNO table, quirks included)")
    p.add_argument("--metrics", help="comma-separated subset, e.g. MI,VIF,Qabf (default: all)")
    p.add_argument("--csv", default="eval_per_image.csv", help="per-image CSV (default: %(default)s)")
    p.add_argument("--plot", help="save a bar chart of the means to this PNG")
    p.add_argument("--save-fused", metavar="DIR", help="write what --ours/--baseline fused to DIR/METHOD/")
    p.add_argument("--limit", type=int, help="score only the first N pairs")
    p.add_argument("--max-frames", type=int, help="video mode: frames per clip")
    p.add_argument("--workers", type=int, help="threads for metric computation (default: CPU count)")


def _fusers(args: argparse.Namespace) -> dict:
    from rtfuse.baselines import BASELINES

    fusers = {}
    if args.ours is not None:
        from rtfuse.fuser import Fuser

        fusers["rtfuse"] = Fuser.from_checkpoint(args.ours) if args.ours else Fuser.default()
    for name in (BASELINE_NAMES if args.baselines else args.baseline):
        fusers[name] = BASELINES[name]
    return fusers


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rtfuse import evaluate
    from rtfuse.errors import RtfuseError
    from rtfuse.paths import check_outputs

    if (args.suite is None) == (args.data is None):
        raise RtfuseError("give either --data DIR or --suite ROOT")
    if args.suite is not None:
        return _run_suite(args)

    check_outputs(args.csv, args.plot, inputs=(Path(args.data) / "vi", Path(args.data) / "ir", *dict(args.fused).values()))
    names = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    fused_dirs = dict(args.fused)
    for name, folder in fused_dirs.items():
        if not folder.is_dir():
            raise RtfuseError(f"--fused {name}={folder}: not a folder")
    if args.degrade:
        from rtfuse.degrade import parse_spec

        parse_spec(args.degrade)
    fusers = _fusers(args)
    if args.degrade:
        fusers = {f"{name} [{args.degrade}]": fn for name, fn in fusers.items()}

    if evaluate.is_video_dataset(args.data):
        if args.degrade:
            raise RtfuseError("--degrade is for image datasets; the video mode scores temporal flicker")
        rows, bad = evaluate.evaluate_videos(args.data, fused_dirs, fusers, args.convention, args.max_frames)
        print(evaluate.video_table(rows))
        _print_bad(bad)
        return 0

    result = evaluate.evaluate_folder(
        args.data, fused_dirs, fusers, convention=args.convention, names=names, degrade=args.degrade,
        limit=args.limit, save_fused=args.save_fused, workers=args.workers,
        progress=lambda it: tqdm(it, desc="scoring", unit="pair"),
    )
    print(f"convention: {result.convention}  (bold: best mean; n: images per mean; rank: mean rank over metrics, 1 = best)")
    print(evaluate.markdown_table(result))
    _print_bad(result.bad)
    evaluate.write_csv(result, args.csv)
    print(f"per-image scores: {args.csv}")
    if args.plot:
        evaluate.plot_means(result, args.plot)
        print(f"bar chart: {args.plot}")
    return 0


def _run_suite(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rtfuse import evaluate, suite
    from rtfuse.baselines import BASELINES
    from rtfuse.errors import RtfuseError
    from rtfuse.fuser import Fuser
    from rtfuse.paths import check_output

    if args.fused or args.baseline or args.baselines or args.degrade:
        raise RtfuseError("--suite scores rtfuse and every baseline itself; --fused, --baseline(s) and --degrade do not apply")
    out = check_output(args.out, folder=True)
    sets = suite.suite_sets(args.suite)
    fuser = Fuser.from_checkpoint(args.ours) if args.ours else Fuser.default()
    fusers = suite.suite_fusers(fuser)
    reports = []
    for suite_set in sets:
        reports.append(suite.score_set(
            suite_set, fusers, args.convention, args.limit, sheet_dir=out,
            progress=lambda it, name=suite_set.name: tqdm(it, desc=name, unit="pair", leave=False)))
        r = reports[-1]
        print(f"{r.name}: {r.images} pairs, {r.verdict}, {len(r.below_mean)} below mean fusion on Qabf", flush=True)
    text = suite.markdown(reports, args.convention)
    if not args.no_video and suite.clip_root(args.suite) is not None:
        rows, bad = evaluate.evaluate_videos(suite.clip_root(args.suite), fusers={suite.OURS: fuser, **BASELINES},
                                             convention=args.convention, max_frames=args.max_frames)
        text += "\n\n**Temporal flicker, whole M2VD clips** (rtfuse plans once per clip; lower is better)\n\n"
        text += evaluate.video_table(rows)
        _print_bad(bad)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "suite.md").write_text(text + "\n")
    suite.write_json(reports, out / "suite.json", args.convention)
    print(f"\nreport: {out / 'suite.md'}, {out / 'suite.json'}; sheets: {out}/sheet_*.png")
    return 0


def _print_bad(bad: list) -> None:
    if not bad:
        return
    print(f"\nexcluded ({len(bad)}):")
    for b in bad:
        print(f"  {b.name} [{b.method}]: {b.reason}")
