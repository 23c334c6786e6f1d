"""``python -m rtfuse_train stage2``: train the fusion network with DAGM frozen from stage 1."""

from __future__ import annotations

import argparse
from pathlib import Path

from rtfuse.model.config import FUSION_BASES
from rtfuse_train.stage2 import TARGETS
from rtfuse_train.cli._sources import add_scene_arguments, add_source_arguments, add_training_arguments

HELP = "stage 2: train the fusion network (PKDM + DGME U-Net) on degraded pairs with clean references"


def configure(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    add_source_arguments(data)
    data.add_argument("--size", type=int, default=128, help="crop side (a multiple of 16; default 128)")
    data.add_argument("--samples-per-epoch", type=int, default=2048)
    data.add_argument("--test-fraction", type=float, default=0.2, help="share of source groups held out")
    data.add_argument("--severity", type=float, nargs=2, default=(0.2, 1.0), metavar=("LOW", "HIGH"))
    data.add_argument("--composites", type=float, default=0.0, metavar="SHARE",
                      help="share of training samples with a composite scene: night_fog, rainy_night, hazy_glare (default 0)")
    data.add_argument("--gray-visible", type=float, default=0.0, metavar="SHARE",
                      help="share of training samples whose visible camera is monochrome (default 0)")
    add_scene_arguments(data)
    model = parser.add_argument_group("model")
    model.add_argument("--dagm", type=Path, required=True, help="stage-1 checkpoint (its DAGM is frozen)")
    model.add_argument("--model", default="rt",
                       help="rt, base, an ablation of the paper (rt-nopkdm, rt-dense) or an experiment of "
                            "experiments/log.md (rt-lap, rt-sel, ...: registered by rtfuse_train/experiments.py)")
    model.add_argument("--base", metavar="BASE",
                       help=f"fusion base instead of the model's own: {', '.join(FUSION_BASES)} (max: the paper's "
                            "intensity target, an ablation) or an experiment's (rtfuse_train/experiments.py)")
    loss = parser.add_argument_group("loss weights")
    loss.add_argument("--target", choices=TARGETS, default="max",
                      help="what L_pix and L_grad pull towards: the clean sources' per-pixel maxima (the paper's), "
                           "or their fusion by the model's base (the head then learns to undo degradations)")
    for name, default in (("pix", 1.0), ("grad", 1.0), ("recon", 0.5), ("pkdm", 0.5), ("aux", 0.01), ("ssim", 0.0), ("qabf", 0.0)):
        loss.add_argument(f"--w-{name}", type=float, default=default, help=f"weight of L_{name} (default {default})")
    add_training_arguments(parser, batch_size=16, weight_decay=0.0)


def run(args: argparse.Namespace) -> int:
    from rtfuse_train.data import SceneMix
    from rtfuse_train.losses import LossWeights
    from rtfuse_train.stage2 import Stage2Options, run_stage2
    from rtfuse_train.trainer import TrainConfig

    run_dir = args.run_dir or args.out.with_name(args.out.stem + "_run")
    cfg = TrainConfig(run_dir=str(run_dir), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, seed=args.seed,
                      workers=args.workers, device=args.device, eval_every=args.eval_every,
                      progress=not args.no_progress)
    weights = LossWeights(args.w_pix, args.w_grad, args.w_recon, args.w_pkdm, args.w_aux, args.w_ssim, args.w_qabf)
    opts = Stage2Options(out=args.out, dagm=args.dagm, model=args.model, base=args.base, target=args.target, pairs=args.pairs,
                         videos=[tuple(v) for v in args.video], every=args.every, size=args.size,
                         samples_per_epoch=args.samples_per_epoch, test_fraction=args.test_fraction,
                         severity_range=tuple(args.severity), weights=weights, train=cfg,
                         scenes=SceneMix(composites=args.composites, gray_visible=args.gray_visible, night=args.night,
                                         dark_infrared=args.dark_infrared))
    result = run_stage2(opts, resume=args.resume)
    if result.exported is None:
        return 0
    m = result.metrics
    print(f"trained {result.epochs_run} epochs ({result.steps} steps) in {result.wall_s / 60:.1f} min")
    print("held-out loss terms: " + " ".join(f"{k[5:]}={v:.4f}" for k, v in m.items() if k.startswith("test_")))
    print(f"checkpoint: {result.exported}   logs: {run_dir}")
    return 0
