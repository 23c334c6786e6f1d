"""``python -m rtfuse_train stage1``: degradation recognition for DAGM."""

from __future__ import annotations

import argparse

from rtfuse_train.cli._sources import add_scene_arguments, add_source_arguments, add_training_arguments
from rtfuse_train.data import NIGHT_LABELS, SceneMix

HELP = "stage 1: train DAGM to recognise degradations (6 classes + severity) and write a FusionNet checkpoint"


def configure(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    add_source_arguments(data)
    data.add_argument("--cache-side", type=int, default=256, help="short side of the in-memory source cache")
    data.add_argument("--size", type=int, default=128, help="crop side fed to DAGM (default 128)")
    data.add_argument("--samples-per-epoch", type=int, default=4096)
    data.add_argument("--eval-repeats", type=int, default=4, help="test samples per held-out source and class")
    data.add_argument("--test-fraction", type=float, default=0.2, help="share of source groups held out")
    data.add_argument("--severity", type=float, nargs=2, default=(0.2, 1.0), metavar=("LOW", "HIGH"),
                      help="severity range of degraded samples (default 0.2 1.0)")
    add_scene_arguments(data)
    data.add_argument("--night-label", choices=NIGHT_LABELS, default="low_light",
                      help="label of a night scene left clean: low_light (how it was rendered; default) or clean "
                           "(darkness is normal at night)")
    model = parser.add_argument_group("model")
    model.add_argument("--encoder", choices=("lite", "clip"), default="lite")
    model.add_argument("--clip-weights", metavar="FILE",
                       help="pretrained open_clip weights (local file; an open_clip tag downloads)")
    model.add_argument("--clip-model", default="ViT-B-32")
    train = add_training_arguments(parser, batch_size=64, weight_decay=1e-4)
    train.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    train.add_argument("--batchnorm", choices=("batch", "sync", "frozen"), default="batch",
                       help="batch statistics per process, synchronised (GPUs), or frozen (eval mode)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from rtfuse.degrade import CLASSES
    from rtfuse_train.stage1 import Stage1Options, default_run_dir, format_confusion, format_severity, run_stage1
    from rtfuse_train.trainer import TrainConfig

    run_dir = args.run_dir or default_run_dir(args.out)
    cfg = TrainConfig(run_dir=str(run_dir), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, optimizer=args.optimizer, warmup_steps=args.warmup_steps,
                      seed=args.seed, workers=args.workers, batchnorm=args.batchnorm, device=args.device,
                      eval_every=args.eval_every, progress=not args.no_progress)
    opts = Stage1Options(out=args.out, pairs=args.pairs, videos=[tuple(v) for v in args.video], every=args.every,
                         cache_side=args.cache_side, size=args.size, samples_per_epoch=args.samples_per_epoch,
                         eval_repeats=args.eval_repeats, test_fraction=args.test_fraction,
                         severity_range=tuple(args.severity), night_label=args.night_label,
                         scenes=SceneMix(night=args.night, dark_infrared=args.dark_infrared), encoder=args.encoder,
                         clip_weights=args.clip_weights, clip_model=args.clip_model, train=cfg)
    result = run_stage1(opts, resume=args.resume)
    if result.exported is None:  # not rank 0 under torchrun
        return 0
    m = result.metrics
    print(f"trained {result.epochs_run} epochs ({result.steps} steps) in {result.wall_s / 60:.1f} min")
    print(f"held-out test: {m['test_samples']} samples, top-1 accuracy {m['test_accuracy']:.4f}, "
          f"severity MAE {m['test_severity_mae']:.3f}")
    print(format_confusion(np.asarray(m["confusion"]), list(CLASSES)))
    print(format_severity([tuple(r) for r in m["by_severity"]]))
    print(f"checkpoint: {result.exported}   logs: {run_dir}")
    return 0
