"""Side-by-side backend benchmark: latency, FPS, speed-up, plan-switch time, error.

The CPU here is shared, so absolute times drift during a run; engines are timed round-robin
(one frame each per round) so every backend sees the same load, and the ratios are the result.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from rtfuse.engine.backends import CompiledEngine, EagerEngine, Engine, export_engine, load_engine, tensorrt_missing
from rtfuse.model import FusionNet, Plan

log = logging.getLogger(__name__)

SIZES = ((320, 256), (640, 480), (1280, 1024))  # (width, height)


@dataclass
class Row:
    size: str
    backend: str
    precision: str
    median_ms: float
    fps: float
    vs_dense: float  # speed-up over eager with all experts computed
    vs_sparse: float  # speed-up over eager sparse
    max_abs_err: float  # against eager sparse fp32
    plan_switch_ms: float | None
    build_s: float


def _sync(device: str) -> None:
    """GPU work is asynchronous: wait for it before reading the clock."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_switch(engine: Engine, plans: tuple[Plan, Plan], repeat: int) -> float:
    times = [engine.set_plan(plans[i % 2]) for i in range(1, 2 * repeat + 1)]
    return statistics.median(times) * 1e3


def benchmark(
    model: FusionNet,
    plans: tuple[Plan, Plan],
    *,
    model_hash: str,
    sizes: tuple[tuple[int, int], ...] = SIZES,
    backends: tuple[str, ...] = ("eager", "compiled", "aoti"),
    precisions: tuple[str, ...] = ("fp32",),
    repeat: int = 10,
    device: str = "cpu",
    workdir: str | Path = "export/bench",
    on_progress: Callable[[str], None] | None = None,
) -> dict:
    """Time every available backend at every size; ``plans`` are two plans to switch between."""
    note = on_progress or (lambda _msg: None)
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    if "tensorrt" in backends and tensorrt_missing(device):
        skipped["tensorrt"] = "needs " + " and ".join(tensorrt_missing(device))
    g = torch.Generator().manual_seed(0)
    for width, height in sizes:
        size = f"{width}x{height}"
        vis = torch.rand(1, 3, height, width, generator=g).to(device)
        ir = torch.rand(1, 1, height, width, generator=g).to(device)
        engines: dict[tuple[str, str], tuple[Engine, float]] = {
            ("eager-dense", "fp32"): (EagerEngine(model, plans[0], device, dense=True), 0.0),
            ("eager", "fp32"): (EagerEngine(model, plans[0], device), 0.0),
        }
        for backend in backends:
            if backend == "eager" or backend in skipped:
                continue
            for precision in precisions:
                note(f"{size}: building {backend} {precision}")
                t0 = time.perf_counter()
                if backend == "compiled":
                    engine: Engine = CompiledEngine(model, plans[0], device, precision)
                else:
                    stem = Path(workdir) / f"{backend}-{size}-{precision}"
                    export_engine(backend, model, plans[0], stem, height=height, width=width, model_hash=model_hash, device=device, precision=precision)
                    engine = load_engine(stem, model, plans[0], model_hash, device)
                with torch.inference_mode():
                    engine(vis, ir)  # first call compiles (compiled) or warms up
                engines[(backend, precision)] = (engine, time.perf_counter() - t0)
        note(f"{size}: timing {len(engines)} engines x {repeat}")
        times: dict[tuple[str, str], list[float]] = {k: [] for k in engines}
        with torch.inference_mode():
            ref = engines[("eager", "fp32")][0](vis, ir)
            errors = {k: float((e(vis, ir) - ref).abs().max()) for k, (e, _) in engines.items()}
            for _ in range(repeat):
                for key, (engine, _) in engines.items():
                    _sync(device)
                    t0 = time.perf_counter()
                    engine(vis, ir)
                    _sync(device)
                    times[key].append(time.perf_counter() - t0)
            switch = {k: _median_switch(e, plans, 3) for k, (e, _) in engines.items() if not k[0].startswith("eager")}
        dense = statistics.median(times[("eager-dense", "fp32")])
        sparse = statistics.median(times[("eager", "fp32")])
        for key, (_, build_s) in engines.items():
            med = statistics.median(times[key])
            rows.append(Row(size, key[0], key[1], med * 1e3, 1.0 / med, dense / med, sparse / med, errors[key], switch.get(key), build_s))
    return {
        "device": device,
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "repeat": repeat,
        "rows": [asdict(r) for r in rows],
        "skipped": skipped,
    }


def table(report: dict) -> str:
    """Markdown table of a ``benchmark`` report."""
    head = "| size | backend | precision | median ms | FPS | x dense | x sparse | max abs err | plan switch ms | build s |"
    lines = [head, "|" + "---|" * 10]
    for r in report["rows"]:
        switch = "-" if r["plan_switch_ms"] is None else f"{r['plan_switch_ms']:.1f}"
        lines.append(
            f"| {r['size']} | {r['backend']} | {r['precision']} | {r['median_ms']:.1f} | {r['fps']:.1f} | "
            f"{r['vs_dense']:.2f} | {r['vs_sparse']:.2f} | {r['max_abs_err']:.1e} | {switch} | {r['build_s']:.0f} |"
        )
    for backend, why in report["skipped"].items():
        lines.append(f"\n{backend}: skipped ({why})")
    return "\n".join(lines)
