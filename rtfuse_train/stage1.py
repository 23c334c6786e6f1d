"""Stage 1: train DAGM (encoder + MLP + class head + severity head) to recognise degradations.

Inputs are crops of real registered pairs with one synthetic degradation (rtfuse.degrade) of
known class and severity. The loss is cross-entropy over the 6 classes plus an L1 severity
regression (clean = 0). The product is a whole FusionNet checkpoint whose DAGM is trained; stage 2
loads it and freezes DAGM.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rtfuse.checkpoint import save_checkpoint
from rtfuse.degrade import CLASSES
from rtfuse.model import FusionNet, get_config
from rtfuse_train.data import DegradedPairs, SceneMix, SourcePair, load_sources, split_sources
from rtfuse_train.trainer import TrainConfig, Trainer, TrainResult, seed_everything

log = logging.getLogger(__name__)


def severity_edges(low: float, high: float, bins: int = 4) -> list[float]:
    return [float(x) for x in np.linspace(low, high, bins + 1)]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    m = np.zeros((classes, classes), np.int64)
    np.add.at(m, (labels, predicted), 1)
    return m


def severity_accuracy(labels: np.ndarray, predicted: np.ndarray, severity: np.ndarray,
                      edges: Sequence[float]) -> list[tuple[str, int, float]]:
    """Top-1 accuracy of clean samples and of degraded samples per severity bin: (bin, n, acc)."""
    rows = []
    clean = labels == 0
    rows.append(("clean", int(clean.sum()), float((predicted[clean] == 0).mean()) if clean.any() else float("nan")))
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = ~clean & (severity >= lo) & ((severity < hi) | (hi == edges[-1]))
        acc = float((predicted[sel] == labels[sel]).mean()) if sel.any() else float("nan")
        rows.append((f"{lo:.2f}-{hi:.2f}", int(sel.sum()), acc))
    return rows


def format_confusion(matrix: np.ndarray, classes: Sequence[str]) -> str:
    """Plain-text confusion matrix (rows true, columns predicted) with per-class recall."""
    width = max(len(c) for c in classes) + 1
    lines = ["true \\ pred".ljust(width + 2) + "".join(c[:10].rjust(11) for c in classes) + "     recall"]
    for c, row in zip(classes, matrix):
        recall = row[classes.index(c)] / max(1, row.sum())
        lines.append(c.ljust(width + 2) + "".join(str(v).rjust(11) for v in row) + f"{recall:11.3f}")
    return "\n".join(lines)


def format_severity(rows: Sequence[tuple[str, int, float]]) -> str:
    lines = ["severity      n  accuracy"]
    lines += [f"{name:<10}{n:>5}  {acc:8.3f}" for name, n, acc in rows]
    return "\n".join(lines)


@dataclass
class Stage1:
    """The stage-1 parts of training (see rtfuse_train.trainer.Stage)."""

    out: Path
    severity_range: tuple[float, float] = (0.2, 1.0)
    severity_weight: float = 1.0
    metadata: dict[str, Any] = field(default_factory=dict)
    find_unused_parameters: bool = False

    def module(self, model: FusionNet) -> nn.Module:
        return model.dagm

    def parameters(self, model: FusionNet) -> list[nn.Parameter]:
        return [p for p in model.dagm.parameters() if p.requires_grad]

    def _losses(self, net: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        out = net(batch["vis"], batch["ir"])
        ce = F.cross_entropy(out.logits, batch["label"])
        sev = F.l1_loss(out.severity, batch["severity"])
        return ce + self.severity_weight * sev, ce, sev, out.logits.argmax(1)

    def loss(self, net: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        total, ce, sev, pred = self._losses(net, batch)
        acc = float((pred == batch["label"]).float().mean())
        return total, {"ce": float(ce.detach()), "severity_l1": float(sev.detach()), "accuracy": acc}

    def evaluate(self, net: nn.Module, batches: Iterable[dict]) -> dict[str, Any]:
        labels, preds, sevs, sev_err = [], [], [], []
        for batch in batches:
            out = net(batch["vis"], batch["ir"])
            labels.append(batch["label"].cpu().numpy())
            preds.append(out.logits.argmax(1).cpu().numpy())
            sevs.append(batch["severity"].cpu().numpy())
            sev_err.append((out.severity - batch["severity"]).abs().cpu().numpy())
        y, p, s = np.concatenate(labels), np.concatenate(preds), np.concatenate(sevs)
        matrix = confusion_matrix(y, p, len(CLASSES))
        by_severity = severity_accuracy(y, p, s, severity_edges(*self.severity_range))
        result: dict[str, Any] = {"test_accuracy": float((y == p).mean()),
                                  "test_severity_mae": float(np.concatenate(sev_err).mean()),
                                  "test_samples": int(len(y))}
        for i, c in enumerate(CLASSES):
            result[f"recall_{c}"] = float(matrix[i, i] / max(1, matrix[i].sum()))
        for name, _, acc in by_severity:
            result[f"acc_severity_{name}"] = acc
        result["confusion"] = matrix.tolist()
        result["by_severity"] = [list(r) for r in by_severity]
        return result

    def export(self, model: FusionNet, metrics: dict[str, Any]) -> Path:
        meta = {"stage": 1, "classes": list(CLASSES), **self.metadata,
                **{k: v for k, v in metrics.items() if k != "by_severity"}}
        return save_checkpoint(self.out, model, meta)


@dataclass
class Stage1Options:
    """What the CLI asks for, in one place so tests and scripts build runs the same way."""

    out: Path
    pairs: list[Path] = field(default_factory=list)
    videos: list[tuple[Path, Path]] = field(default_factory=list)
    every: int = 10  # video frame step
    cache_side: int = 256  # sources are cached with this short side
    size: int = 128  # crop side fed to DAGM
    samples_per_epoch: int = 4096
    eval_repeats: int = 4  # per test source and class
    test_fraction: float = 0.2
    severity_range: tuple[float, float] = (0.2, 1.0)
    scenes: SceneMix = SceneMix()  # night scenes and dark thermal cameras (the CLI sets no others)
    night_label: str = "low_light"  # the label of a night scene left clean: low_light or clean
    encoder: str = "lite"
    clip_weights: str | None = None
    clip_model: str = "ViT-B-32"
    clip_vision_overrides: dict | None = None  # tiny random ViTs for tests
    train: TrainConfig | None = None


def build_model(opts: Stage1Options) -> FusionNet:
    overrides: dict[str, Any] = {"encoder": opts.encoder}
    if opts.encoder == "clip":
        overrides.update(clip_model=opts.clip_model, clip_pretrained=opts.clip_weights)
    return FusionNet(get_config("rt", **overrides), opts.clip_vision_overrides)


def build_datasets(opts: Stage1Options, sources: Sequence[SourcePair], seed: int) -> tuple[DegradedPairs, DegradedPairs, dict]:
    """Train/test datasets split by source group, and a summary for the checkpoint metadata."""
    train, test = split_sources(sources, opts.test_fraction)
    train_ds = DegradedPairs(train, opts.size, opts.samples_per_epoch, seed, opts.severity_range,
                             scenes=opts.scenes, night_label=opts.night_label)
    test_ds = DegradedPairs(test, opts.size, len(test) * len(CLASSES) * opts.eval_repeats, seed + 1,
                            opts.severity_range, balanced=True, whole=True)
    summary = {"train_sources": len(train), "test_sources": len(test),
               "train_groups": len({s.group for s in train}), "test_groups": len({s.group for s in test}),
               "test_clips": sorted({s.group for s in test if "#" in s.name}),
               "data": [str(p) for p in opts.pairs] + [f"{v}|{i}" for v, i in opts.videos],
               **asdict(opts.scenes), "night_label": opts.night_label}
    return train_ds, test_ds, summary


def default_run_dir(out: Path) -> Path:
    return out.with_name(out.stem + "_run")


def make_trainer(opts: Stage1Options, sources: Sequence[SourcePair] | None = None) -> tuple[Trainer, dict]:
    cfg = opts.train or TrainConfig(run_dir=str(default_run_dir(opts.out)))
    seed_everything(cfg.seed)
    model = build_model(opts)
    sources = sources if sources is not None else load_sources(opts.pairs, opts.videos, opts.every, opts.cache_side)
    train_ds, test_ds, summary = build_datasets(opts, sources, cfg.seed)
    stage = Stage1(opts.out, opts.severity_range, metadata=summary)
    return Trainer(model, stage, train_ds, test_ds, cfg), summary


def run_stage1(opts: Stage1Options, resume: bool = False, sources: Sequence[SourcePair] | None = None) -> TrainResult:
    trainer, summary = make_trainer(opts, sources)
    log.info("stage 1: %d train / %d test sources (%d / %d groups)", summary["train_sources"],
             summary["test_sources"], summary["train_groups"], summary["test_groups"])
    try:
        return trainer.fit(resume)
    finally:
        trainer.close()
