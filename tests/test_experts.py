"""Expert activation statistics and `rtfuse experts` on real pairs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch

from rtfuse.experts import activation_by_class, routing_distance
from rtfuse.model import create_model


def test_activation_matrices_are_gate_distributions():
    torch.manual_seed(0)
    model = create_model("rt").eval()
    rng = np.random.default_rng(0)
    pairs = [(rng.random((48, 64, 3), dtype=np.float32), rng.random((48, 64), dtype=np.float32))]
    mats = activation_by_class(model, pairs, severities=(0.5,), classes=("clean", "haze"))
    assert set(mats) == {"clean", "haze"}
    for m in mats.values():
        assert m.shape == (len(model.dgme_layers()), model.cfg.num_experts)
        np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-5)
        assert ((m > 0).sum(1) <= model.cfg.top_k).all()  # one pair, one severity: exactly top-k per layer


def test_routing_distance():
    a = np.array([[1.0, 0.0], [0.5, 0.5]])
    b = np.array([[0.0, 1.0], [0.5, 0.5]])
    assert routing_distance({"a": a, "b": a}) == 0
    assert np.isclose(routing_distance({"a": a, "b": b}), 0.5)  # layer TVs 1 and 0


def test_experts_cli_on_real_pairs(shared_data, tmp_path):
    out = tmp_path / "experts.png"
    r = subprocess.run(
        [sys.executable, "-m", "rtfuse.cli", "experts", "--data", str(shared_data / "msrs"), "--out", str(out),
         "--max-images", "1", "--severities", "0.6"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 10_000
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["mean_gates"]) == {"clean", "haze", "low_light", "overexposure", "rain", "noise"}
    assert len(report["layers"]) == 12
