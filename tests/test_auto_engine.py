"""Compiled by default without the wait: ``backend="auto"`` fuses on the eager engine at once,
builds the aoti engine in a separate process and switches when it is ready."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from rtfuse import fuser as fusing
from rtfuse.engine import stages_spec
from rtfuse.engine.aside import compiler_missing
from rtfuse.fuser import Fuser

H, W = 40, 56


def _pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (H, W, 3), dtype=np.uint8), rng.integers(0, 255, (H, W), dtype=np.uint8)


@pytest.mark.slow
@pytest.mark.skipif(compiler_missing() is not None, reason="needs a C++ compiler for the aoti engine")
def test_auto_switches_to_the_compiled_engine_without_losing_a_frame(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("RTFUSE_CACHE", str(tmp_path))
    vis, ir = _pair()
    fuser = Fuser.default(backend="auto")
    plan = fuser.plan_for(vis, ir)
    eager = fuser(vis, ir, plan=plan)
    outputs = [eager]
    deadline = time.monotonic() + 600
    while not fuser.switches and time.monotonic() < deadline:
        outputs.append(fuser(vis, ir, plan=plan))  # eager meanwhile: one output per call
        time.sleep(0.2)
    assert fuser.switches, "the compiled engine never arrived"
    switch = fuser.switches[0]
    assert switch["size"] == f"{W}x{H}" and switch["engine"] == "aoti" and switch["frame"] == len(outputs) - 1
    assert fuser.last_engine == "aoti" and fuser.calls == len(outputs)
    assert np.abs(outputs[-1].astype(int) - eager.astype(int)).max() <= 1  # the same fusion, compiled
    engines = tmp_path / "engines"
    assert not list(engines.glob("*.building")) and not list(engines.glob("*.log"))  # the build cleaned up
    # built for the plan's PKDM stages only
    stages = stages_spec(plan.active_stages)
    assert switch["stages"] == stages
    assert [json.loads(p.read_text())["stages"] for p in engines.glob("*.json")] == [stages]

    # a plan that needs another stage set fuses on the eager engine (here: no compiler for its build)
    other = dataclasses.replace(plan, stage_strengths=tuple(0.0 if on else 0.5 for on in plan.active_stages))
    monkeypatch.setattr(fusing, "compiler_missing", lambda: "no C++ compiler (c++, g++ or clang++) on PATH")
    assert np.array_equal(fuser(vis, ir, plan=other), Fuser.default()(vis, ir, plan=other))
    assert fuser.last_engine == "eager"
    fuser(vis, ir, plan=plan)  # and back on the compiled engine for the first plan
    assert fuser.last_engine == "aoti" and len(fuser.switches) == 1
    monkeypatch.undo()
    monkeypatch.setenv("RTFUSE_CACHE", str(tmp_path))

    again = Fuser.default(backend="auto")  # a later run: compiled from its first frame
    again(vis, ir, plan=plan)
    assert again.switches[0]["frame"] == 0 and again.last_engine == "aoti"


def test_auto_stays_eager_and_says_so_once_without_a_compiler(monkeypatch, caplog):
    monkeypatch.setattr(fusing, "compiler_missing", lambda: "no C++ compiler (c++, g++ or clang++) on PATH")
    vis, ir = _pair()
    fuser = Fuser.default(backend="auto")
    plan = fuser.plan_for(vis, ir)
    with caplog.at_level(logging.WARNING, logger="rtfuse.fuser"):
        for _ in range(3):
            fuser(vis, ir, plan=plan)
    said = [r.getMessage() for r in caplog.records if "staying on the eager engine" in r.getMessage()]
    assert len(said) == 1 and "no C++ compiler" in said[0]
    assert fuser.last_engine == "eager" and not fuser.switches and fuser.calls == 3


def test_auto_takes_no_precision_or_artifact():
    with pytest.raises(fusing.ParameterError, match="`backend` auto compiles an fp32 engine itself"):
        Fuser.default(backend="auto", precision="bf16")
