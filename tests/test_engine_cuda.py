"""Engines on an NVIDIA GPU: the CUDA backends match the CPU sparse eager path on real images,
fp16 stays within its stated error, plan switches are weight updates. Skipped without CUDA."""

from __future__ import annotations

import copy

import pytest
import torch

from rtfuse.engine import CompiledEngine, EagerEngine, export_engine, load_engine, state_dict_sha256, tensorrt_missing
from rtfuse.fuser import prepare_infrared, prepare_visible
from rtfuse.imageio import read_image
from rtfuse.model import create_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")

TOL_FP32 = 1e-3  # TF32 convolutions on Ampere and later
TOL_FP16 = 2e-2
SIZE = (480, 640)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("rt").eval()


@pytest.fixture(scope="module")
def pair(shared_data):
    h, w = SIZE
    vis = prepare_visible(read_image(shared_data / "msrs" / "vi" / "00004N.png"))[..., :h, :w].contiguous()
    ir = prepare_infrared(read_image(shared_data / "msrs" / "ir" / "00004N.png", gray=True))[..., :h, :w].contiguous()
    return vis, ir


@pytest.fixture(scope="module")
def plans(model, pair):
    with torch.inference_mode():
        first = model.plan_for(*pair)
        second = model.plan(torch.randn(1, model.cfg.deg_dim, generator=torch.Generator().manual_seed(3)))
    return first, second


@pytest.fixture(scope="module")
def reference(model, pair, plans):
    """CPU fp32 sparse eager output for each plan."""
    with torch.inference_mode():
        return [model(*pair, plan=p).fused for p in plans]


def _on_cuda(pair):
    return tuple(t.cuda() for t in pair)


def _max_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return (out.float().cpu() - ref).abs().max().item()


def test_cuda_eager_matches_cpu(model, pair, plans, reference):
    engine = EagerEngine(copy.deepcopy(model).cuda(), plans[0], device="cuda")
    with torch.inference_mode():
        assert _max_error(engine(*_on_cuda(pair)), reference[0]) <= TOL_FP32
        engine.set_plan(plans[1])
        assert _max_error(engine(*_on_cuda(pair)), reference[1]) <= TOL_FP32


@pytest.mark.parametrize("precision, tol", [("fp32", TOL_FP32), ("fp16", TOL_FP16)])
def test_cuda_compiled_matches_cpu_and_switches_plans_without_recompiling(model, pair, plans, reference, precision, tol):
    engine = CompiledEngine(model, plans[0], device="cuda", precision=precision)
    with torch.inference_mode():
        assert _max_error(engine(*_on_cuda(pair)), reference[0]) <= tol
        switch_s = engine.set_plan(plans[1])
        with torch._dynamo.config.patch(error_on_recompile=True):
            assert _max_error(engine(*_on_cuda(pair)), reference[1]) <= tol
    assert switch_s < 0.05


@pytest.mark.parametrize(
    "backend, tol",
    [
        ("aoti", TOL_FP32),
        pytest.param("tensorrt", TOL_FP16, marks=pytest.mark.skipif(
            bool(tensorrt_missing("cuda")), reason="torch-tensorrt (the trt extra) is not installed")),
    ],
)
def test_cuda_exported_engine_matches_cpu_and_switches_plans(model, pair, plans, reference, tmp_path, backend, tol):
    h, w = SIZE
    out = tmp_path / f"rt-{backend}"
    export_engine(backend, model, plans[0], out, height=h, width=w, model_hash=state_dict_sha256(model), device="cuda")
    engine = load_engine(out, model, plans[1], state_dict_sha256(model), device="cuda")
    with torch.inference_mode():
        assert _max_error(engine(*_on_cuda(pair)), reference[1]) <= tol
        engine.set_plan(plans[0])
        assert _max_error(engine(*_on_cuda(pair)), reference[0]) <= tol
