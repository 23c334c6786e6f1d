"""Latency profile of a pipeline run: per-stage times, glass-to-glass, FPS, drops, plan changes.

Stages, per published frame (seconds, measured with time.monotonic / perf_counter):
capture (grab + decode + conversion, the slower of the two streams), sync (earlier grab until the
pair was released), queue (released until the processing loop took it), preprocess (resize/warp
plus the engine's pre-processing), inference, postprocess, publish. Glass-to-glass runs from the
earlier grab stamp of the pair to the moment the frame was handed to the publisher socket.
Two overheads are reported: glass-to-glass minus inference (``overhead_ms``), and glass-to-glass
minus the whole engine call, i.e. what the pipeline itself adds (``pipeline_overhead_ms``).
Frames that were not fused are counted in ``drops`` by reason; a replay whose sources end apart
names the one that ended first (``meta.ended_first``, ``meta.unpaired_remainder``).
"""

from __future__ import annotations

import json
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from rtfuse.errors import RtfuseError

STAGES = ("capture", "sync", "queue", "preprocess", "inference", "postprocess", "publish")
PERCENTILES = (50, 95, 99)


def latency_stats(values_s: np.ndarray) -> dict[str, float]:
    """p50/p95/p99/mean/max in milliseconds (empty input gives an empty dict)."""
    if len(values_s) == 0:
        return {}
    ms = np.asarray(values_s, dtype=np.float64) * 1e3
    out = {f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(ms, PERCENTILES))}
    out["mean"] = float(ms.mean())
    out["max"] = float(ms.max())
    return out


class Profiler:
    """Collects one record per published frame in compact arrays (hours of video stay small).

    The first frame, which also pays for the initial expert plan and the engine's warm-up, is
    kept apart as ``first_frame`` so it does not distort the steady-state percentiles.
    """

    def __init__(self) -> None:
        self.stages: dict[str, array] = {s: array("d") for s in STAGES}
        self.glass: array = array("d")
        self.engine: array = array("d")
        self.t_publish: array = array("d")
        self.drops: Counter[str] = Counter()
        self.label_changes: list[dict[str, Any]] = []
        self.plan_refreshes: list[dict[str, Any]] = []
        self.first_frame: dict[str, float] | None = None
        self.meta: dict[str, Any] = {}
        self._label: str | None = None
        self._t0 = time.monotonic()

    def add(self, stages: dict[str, float], glass_s: float, t_publish: float, engine_s: float) -> None:
        """One published frame; ``engine_s`` is the whole engine call (its pre/post included)."""
        if self.first_frame is None:
            self.first_frame = {**stages, "glass_to_glass": glass_s}
            return
        for s in STAGES:
            self.stages[s].append(stages.get(s, 0.0))
        self.glass.append(glass_s)
        self.engine.append(engine_s)
        self.t_publish.append(t_publish)

    def label(self, frame: int, label: str, plan_id: str) -> None:
        """Note the degradation label of a frame; changes are kept as events."""
        if label != self._label:
            self.label_changes.append(
                {"frame": frame, "t": time.monotonic() - self._t0, "from": self._label, "to": label, "plan": plan_id}
            )
            self._label = label

    def plan_refresh(self, reason: str, seconds: float) -> None:
        self.plan_refreshes.append({"t": time.monotonic() - self._t0, "reason": reason, "seconds": seconds})

    @property
    def frames(self) -> int:
        return len(self.glass) + (self.first_frame is not None)

    def report(self) -> dict[str, Any]:
        """Everything as plain JSON types, including per-frame series for the plot."""
        glass = np.array(self.glass, dtype=np.float64)
        inference = np.array(self.stages["inference"], dtype=np.float64)
        tp = np.array(self.t_publish, dtype=np.float64)
        engine = np.array(self.engine, dtype=np.float64)
        fps = float((len(tp) - 1) / (tp[-1] - tp[0])) if len(tp) > 1 and tp[-1] > tp[0] else 0.0
        return {
            "meta": self.meta,
            "frames": self.frames,
            "steady_frames": len(glass),
            "fps": fps,
            "glass_to_glass_ms": latency_stats(glass),
            "overhead_ms": latency_stats(glass - inference),
            "pipeline_overhead_ms": latency_stats(glass - engine),
            "stages_ms": {s: latency_stats(np.array(self.stages[s], dtype=np.float64)) for s in STAGES},
            "first_frame_ms": {k: v * 1e3 for k, v in (self.first_frame or {}).items()},
            "drops": dict(sorted(self.drops.items())),
            "label_changes": self.label_changes,
            "plan_refreshes": self.plan_refreshes,
            "series": {  # t_s: seconds since the profiler started, like label_changes[].t
                "t_s": (tp - self._t0).round(6).tolist(),
                "glass_to_glass_ms": (glass * 1e3).round(3).tolist(),
                "inference_ms": (inference * 1e3).round(3).tolist(),
            },
        }


def save_report(report: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))


def load_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise RtfuseError(f"{path}: no such file") from exc
    except ValueError as exc:
        raise RtfuseError(f"{path}: not a JSON profile report ({exc})") from exc
    if not isinstance(report, dict) or "glass_to_glass_ms" not in report:
        raise RtfuseError(f"{path}: not an rtfuse profile report (no glass_to_glass_ms)")
    return report


def _fmt(stats: dict[str, float]) -> str:
    if not stats:
        return "n/a"
    return " / ".join(f"{stats[f'p{p}']:.1f}" for p in PERCENTILES) + " ms"


def summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [
        f"frames {report['frames']}  fps {report['fps']:.1f}  "
        f"(steady state after the first frame; first frame {report['first_frame_ms'].get('glass_to_glass', 0):.0f} ms)",
        f"glass-to-glass p50/p95/p99  {_fmt(report['glass_to_glass_ms'])}",
        f"overhead (g2g - inference)  {_fmt(report['overhead_ms'])}",
        f"  outside the engine call   {_fmt(report['pipeline_overhead_ms'])}",
    ]
    for stage, stats in report["stages_ms"].items():
        lines.append(f"  {stage:<12} {_fmt(stats)}")
    drops = report["drops"]
    lines.append("drops: " + (", ".join(f"{k} {v}" for k, v in drops.items()) if drops else "none"))
    meta = report.get("meta", {})
    if meta.get("ended_first"):  # replay: one source ended, the other had frames no pair could use
        ((other, left),) = meta["unpaired_remainder"].items()
        rest = f"the rest of {other}" if left is None else f"{left} {other} frames"
        lines.append(f"{meta['ended_first']} ended first: {rest} left unpaired")
    changes = report["label_changes"]
    lines.append(
        "degradation labels: " + (" -> ".join(f"{c['to']}@{c['frame']}" for c in changes) if changes else "none")
    )
    lines.extend(engine_lines(report))
    source_fps = meta.get("source_fps")
    if meta.get("engine") == "eager" and meta.get("engine_backend") != "auto" and source_fps and report["fps"] < 0.9 * source_fps:
        lines.append(
            f"hint: the eager engine kept {report['fps']:.0f} of the sources' {source_fps:.0f} FPS; a compiled engine "
            "runs the same model about 3x faster: `backend` aoti (built once, about a minute; docs/engines.md)"
        )
    return "\n".join(lines)


def since_frame(report: dict[str, Any], frame: int) -> dict[str, float] | None:
    """FPS and medians (ms) of the frames from ``frame`` on (None with fewer than two of them)."""
    series = report["series"]
    first = max(0, frame - (report["frames"] - len(series["t_s"])))  # the series leaves out the first frames
    t = np.array(series["t_s"][first:], dtype=np.float64)
    if len(t) < 2 or t[-1] <= t[0]:
        return None
    return {"t_s": float(t[0]), "fps": (len(t) - 1) / float(t[-1] - t[0]),
            "glass_to_glass_p50_ms": float(np.median(series["glass_to_glass_ms"][first:])),
            "inference_p50_ms": float(np.median(series["inference_ms"][first:]))}


def engine_lines(report: dict[str, Any]) -> list[str]:
    """The ``auto`` engine's story: when it left the eager engine and how the run went after."""
    meta = report["meta"]
    if meta.get("engine_backend") != "auto":
        return []
    switches = meta.get("engine_switches") or []
    if not switches:
        return ["engine: eager all along; the compiled aoti engine was still building aside and stays cached "
                "(the next run starts compiled), or could not be built (see the warnings above)"]
    frame = int(switches[0]["frame"])
    after = since_frame(report, frame)
    stages = switches[0].get("stages")
    line = (f"engine: {'eager, then ' if frame else ''}{switches[0]['engine']}"
            f"{f' (PKDM stages: {stages})' if stages else ''} from frame {frame}")
    if after is not None:
        line += (f" (t={after['t_s']:.1f} s); since then {after['fps']:.1f} FPS, glass-to-glass p50 "
                 f"{after['glass_to_glass_p50_ms']:.1f} ms, inference p50 {after['inference_p50_ms']:.1f} ms")
    lines = [line]
    for later in switches[1:]:  # a re-plan that needed other PKDM stages: eager until their engine was ready
        lines.append(f"engine: {later['engine']} for PKDM stages {later.get('stages', 'all')} from frame {later['frame']}")
    return lines


def plot(report: dict[str, Any], path: str | Path) -> None:
    """Glass-to-glass histogram and timeline (with inference and label changes) as one image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rtfuse.imageio import save_figure

    series = report["series"]
    fig, (ax_h, ax_t) = plt.subplots(1, 2, figsize=(12, 4.5))
    g2g = series["glass_to_glass_ms"]
    ax_h.hist(g2g, bins=min(60, max(5, len(g2g) // 5)), color="tab:blue")
    for p in PERCENTILES:
        value = report["glass_to_glass_ms"].get(f"p{p}")
        if value is not None:
            ax_h.axvline(value, color="k", ls="--", lw=0.8)
            ax_h.text(value, ax_h.get_ylim()[1] * 0.95, f" p{p}", fontsize=8)
    ax_h.set_xlabel("glass-to-glass latency (ms)")
    ax_h.set_ylabel("frames")
    ax_t.plot(series["t_s"], g2g, lw=0.8, label="glass-to-glass")
    ax_t.plot(series["t_s"], series["inference_ms"], lw=0.8, label="inference")
    for change in report["label_changes"][1:]:
        ax_t.axvline(change["t"], color="tab:red", lw=0.6)
    ax_t.set_xlabel("time (s)")
    ax_t.set_ylabel("ms")
    ax_t.legend(loc="upper right")
    fig.suptitle(f"{report['frames']} frames, {report['fps']:.1f} FPS, drops {sum(report['drops'].values())}")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
