"""A reusable training loop: seeds, progress bars, CSV logs, per-epoch checkpoints, resume, DDP.

What a stage trains, its loss, its metrics and what it exports are a :class:`Stage`; the loop
knows none of it. Under ``torchrun`` (WORLD_SIZE > 1) it runs DistributedDataParallel (gloo on
CPU, nccl on CUDA). ``batch_size`` is the *global* batch: each of N processes takes 1/N of it,
and since every sample is a pure function of (seed, epoch, index) (see rtfuse_train.data) a run
on N processes sees exactly the batches of a run on one.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from rtfuse.errors import ParameterError, RtfuseError

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
STEPS_CSV = "steps.csv"
EPOCHS_CSV = "epochs.csv"


@dataclass
class TrainConfig:
    """Everything that shapes the optimisation (stored in the training state for resume)."""

    run_dir: str
    epochs: int = 10
    batch_size: int = 64  # global, over all processes
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adamw | sgd
    warmup_steps: int = 50
    seed: int = 0
    workers: int = 1
    batchnorm: str = "batch"  # batch (per-process statistics) | sync (SyncBatchNorm, GPU) | frozen (eval mode)
    device: str = "cpu"
    eval_every: int = 1  # epochs; the last epoch is always evaluated
    progress: bool = True


class Stage(Protocol):
    """The stage-specific parts of training."""

    find_unused_parameters: bool

    def module(self, model: nn.Module) -> nn.Module:
        """The sub-module whose forward the loss calls (wrapped in DDP when distributed)."""

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters to optimise; everything else stays as it is."""

    def loss(self, net: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss of a batch (mean over samples) and per-step metrics for the CSV."""

    def evaluate(self, net: nn.Module, batches: Iterable[dict]) -> dict[str, Any]:
        """Held-out metrics (net in eval mode, no grad); flat numbers go to the epochs CSV."""

    def export(self, model: nn.Module, metrics: dict[str, Any]) -> Path:
        """Write the stage's product (a FusionNet checkpoint) and return its path."""


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group that torchrun describes in the environment (no-op without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class ShardedSampler(Sampler[int]):
    """A seeded per-epoch permutation, cut to whole global batches, dealt round-robin to ranks.

    Rank r takes positions r, r+N, r+2N, ...; so its k-th batch of B/N holds exactly the samples
    of the k-th global batch of B that a single process would take.
    """

    def __init__(self, length: int, global_batch: int, seed: int, rank: int = 0, world: int = 1):
        if global_batch % world:
            raise RtfuseError(f"batch size {global_batch} is not divisible by {world} processes")
        self.length, self.global_batch, self.seed, self.rank, self.world = length, global_batch, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.length // self.global_batch) * self.global_batch // self.world

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.length, generator=gen)[: len(self) * self.world]
        return iter(perm[self.rank :: self.world].tolist())


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero (a pure function of the step: resume-safe)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers run small per-sample ops; more threads only contend


def _set_batchnorm_eval(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class CsvLog:
    """Append rows to a CSV; a row with new columns widens the header (earlier rows leave them empty)."""

    def __init__(self, path: Path):
        self.path = path
        self.fields: list[str] | None = None
        if path.is_file():
            with open(path, newline="") as f:
                self.fields = next(csv.reader(f), None)

    def write(self, row: dict[str, Any]) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        elif set(row) - set(self.fields):
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
            self.fields += [k for k in row if k not in self.fields]
            with open(self.path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.fields)
                w.writeheader()
                w.writerows(rows)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (work lost when a run stopped between checkpoints)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return
        keep = [r for r in rows if int(r["step"]) <= step]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(keep)


@dataclass
class TrainResult:
    epochs_run: int
    steps: int
    wall_s: float
    metrics: dict[str, Any] = field(default_factory=dict)
    exported: Path | None = None


class Trainer:
    """Trains ``model`` with ``stage`` on ``train_data`` (a dataset with ``set_epoch``)."""

    def __init__(self, model: nn.Module, stage: Stage, train_data: Dataset, eval_data: Dataset | None,
                 cfg: TrainConfig):
        self.cfg, self.stage, self.model = cfg, stage, model
        self.train_data, self.eval_data = train_data, eval_data
        self.dist = init_distributed(cfg.device)
        self.device = torch.device(f"cuda:{self.dist.local_rank}" if cfg.device == "cuda" and self.dist.world > 1 else cfg.device)
        self.run_dir = Path(cfg.run_dir)
        model.to(self.device)
        net = stage.module(model)
        if cfg.batchnorm not in ("batch", "sync", "frozen"):
            raise RtfuseError(f"unknown batchnorm mode {cfg.batchnorm!r} (batch, sync, frozen)")
        if cfg.batchnorm == "sync" and self.dist.world > 1:
            if self.device.type == "cpu":
                raise ParameterError("`batchnorm` sync needs GPUs (PyTorch's SyncBatchNorm has no CPU kernel); use frozen or batch")
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        self.net = net
        params = stage.parameters(model)
        if not params:
            raise RtfuseError("the stage has no trainable parameters")
        if cfg.optimizer == "adamw":
            self.opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
        else:
            raise RtfuseError(f"unknown optimizer {cfg.optimizer!r} (adamw, sgd)")
        if self.dist.world > 1:
            ids = [self.dist.local_rank] if self.device.type == "cuda" else None
            self.ddp: nn.Module = nn.parallel.DistributedDataParallel(
                net, device_ids=ids, find_unused_parameters=stage.find_unused_parameters)
        else:
            self.ddp = net
        self.sampler = ShardedSampler(len(train_data), cfg.batch_size, cfg.seed, self.dist.rank, self.dist.world)
        self.loader = DataLoader(train_data, batch_size=cfg.batch_size // self.dist.world, sampler=self.sampler,
                                 num_workers=cfg.workers, worker_init_fn=_worker_init, drop_last=True)
        if len(self.loader) == 0:
            raise RtfuseError(f"{len(train_data)} training samples make no batch of {cfg.batch_size}")
        self.epoch, self.step = 0, 0

    # ----- state ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.opt.state_dict(), "epoch": self.epoch, "step": self.step,
                "config": json.dumps(asdict(self.cfg))}

    def save_state(self) -> Path:
        """Training state after a finished epoch, written atomically (rank 0 only)."""
        path = self.run_dir / STATE_FILE
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self._state(), tmp)
        tmp.replace(path)
        return path

    def load_state(self) -> None:
        """Continue after the last finished epoch of ``run_dir``."""
        path = self.run_dir / STATE_FILE
        if not path.is_file():
            raise RtfuseError(f"{path}: nothing to resume (no training state in {self.run_dir})")
        state = torch.load(path, map_location=self.device, weights_only=True)
        saved = json.loads(state["config"])
        for key in ("batch_size", "seed"):
            if saved[key] != getattr(self.cfg, key):
                raise RtfuseError(f"{path}: resumed run must keep --{key.replace('_', '-')} {saved[key]} "
                                  f"(got {getattr(self.cfg, key)})")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        if self.dist.main:
            for name in (STEPS_CSV, EPOCHS_CSV):
                CsvLog(self.run_dir / name).truncate_after(self.step)
        log.info("resumed %s at epoch %d, step %d", path, self.epoch, self.step)

    # ----- loop -------------------------------------------------------------------------
    def _evaluate(self) -> dict[str, Any]:
        if self.eval_data is None:
            return {}
        loader = DataLoader(self.eval_data, batch_size=self.cfg.batch_size, num_workers=self.cfg.workers,
                            worker_init_fn=_worker_init)
        self.net.eval()
        with torch.no_grad():
            return self.stage.evaluate(self.net, (_to_device(b, self.device) for b in loader))

    def fit(self, resume: bool = False) -> TrainResult:
        from tqdm import tqdm

        cfg, main = self.cfg, self.dist.main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.load_state()
        steps_csv, epochs_csv = CsvLog(self.run_dir / STEPS_CSV), CsvLog(self.run_dir / EPOCHS_CSV)
        total = cfg.epochs * len(self.loader)
        start = time.perf_counter()
        metrics: dict[str, Any] = {}
        first_epoch = self.epoch
        for epoch in range(first_epoch, cfg.epochs):
            self.sampler.set_epoch(epoch)
            if hasattr(self.train_data, "set_epoch"):
                self.train_data.set_epoch(epoch)
            self.net.train()
            if cfg.batchnorm == "frozen":
                _set_batchnorm_eval(self.net)
            bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (main and cfg.progress),
                       leave=False, dynamic_ncols=True)
            losses = []
            for batch in bar:
                lr = lr_at(self.step, total, cfg.lr, cfg.warmup_steps)
                for g in self.opt.param_groups:
                    g["lr"] = lr
                loss, step_metrics = self.stage.loss(self.ddp, _to_device(batch, self.device))
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.step += 1
                losses.append(float(loss.detach()))
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                if main:
                    steps_csv.write({"step": self.step, "epoch": epoch + 1, "lr": lr, "loss": losses[-1],
                                     **step_metrics, "elapsed_s": time.perf_counter() - start})
            self.epoch = epoch + 1
            last = self.epoch == cfg.epochs
            if main:
                evaluated = self._evaluate() if last or self.epoch % cfg.eval_every == 0 else {}
                metrics = evaluated or metrics
                flat = {k: v for k, v in evaluated.items() if isinstance(v, (int, float))}
                epochs_csv.write({"step": self.step, "epoch": self.epoch, "train_loss": sum(losses) / len(losses),
                                  "elapsed_s": time.perf_counter() - start, **flat})
                self.save_state()
                log.info("epoch %d/%d: train loss %.4f %s", self.epoch, cfg.epochs, sum(losses) / len(losses),
                         " ".join(f"{k}={v:.4g}" for k, v in flat.items()))
            if self.dist.world > 1:
                dist.barrier()
        exported = None
        if main:
            if not metrics:  # resumed a finished run: nothing was evaluated in this call
                metrics = self._evaluate()
            exported = self.stage.export(self.model, metrics)
        return TrainResult(self.epoch - first_epoch, self.step, time.perf_counter() - start, metrics, exported)

    def close(self) -> None:
        if self.dist.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
