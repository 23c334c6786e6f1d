"""The TensorRT engine, driven where it cannot run: a stand-in ``torch_tensorrt`` module.

There is no GPU here, so ``torch_tensorrt`` stands in (the only stand-in of these tests): it records
what is compiled, saved, loaded, refitted and called, and runs the program it was given on the CPU,
so that the engine's outputs can be checked against the eager model before and after a plan switch.
``bench/gpu_check.sh`` runs the real thing on a GPU.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch

from rtfuse.engine import backends, export_engine, load_engine
from rtfuse.model import create_model

H, W = 64, 96


class _Compiled(torch.nn.Module):
    """What the stand-in's compile and load return: the program's module, calls recorded."""

    def __init__(self, program: torch.export.ExportedProgram, log: list):
        super().__init__()
        self.graph_module, self.log = program.module(), log

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        self.log.append(("call", tuple(vis.shape), vis.is_contiguous()))
        return self.graph_module(vis, ir)


def _stand_in(log: list) -> tuple[types.ModuleType, types.ModuleType]:
    trt, dynamo = types.ModuleType("torch_tensorrt"), types.ModuleType("torch_tensorrt.dynamo")

    def compile(program, arg_inputs, enabled_precisions, immutable_weights):
        log.append(("compile", tuple(a.shape for a in arg_inputs), immutable_weights))
        return _Compiled(program, log)

    def save(module, path, output_format, arg_inputs):
        log.append(("save", output_format))
        torch.export.save(torch.export.export(module.graph_module, tuple(arg_inputs)), path)

    def load(path):
        log.append(("load",))
        program = torch.export.load(path)
        return types.SimpleNamespace(module=lambda: _Compiled(program, log))

    def refit_module_weights(module, program, arg_inputs, in_place):
        log.append(("refit", in_place))
        module.graph_module.load_state_dict(program.module().state_dict())
        return module

    trt.load, trt.save, trt.dynamo = load, save, dynamo
    dynamo.compile, dynamo.refit_module_weights = compile, refit_module_weights
    return trt, dynamo


@pytest.fixture
def tensorrt_log(monkeypatch) -> list:
    log: list = []
    trt, dynamo = _stand_in(log)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", trt)
    monkeypatch.setitem(sys.modules, "torch_tensorrt.dynamo", dynamo)
    monkeypatch.setattr(backends, "tensorrt_missing", lambda device: [])  # the GPU is what cannot exist here
    return log


def test_tensorrt_engine_builds_loads_runs_and_switches_plans_by_refit(tensorrt_log, tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = create_model("rt").eval()
    g = torch.Generator().manual_seed(1)
    vis, ir = torch.rand(1, 3, H, W, generator=g), torch.rand(1, 1, H, W, generator=g)
    with torch.inference_mode():
        first = model.plan_for(vis, ir)
        second = model.plan(torch.randn(1, model.cfg.deg_dim, generator=torch.Generator().manual_seed(3)))
    assert [lp.experts for lp in first.layers] != [lp.experts for lp in second.layers]

    export_engine("tensorrt", model, first, tmp_path / "trt", height=H, width=W, model_hash="m", device="cpu",
                  precision="fp32")
    assert [e[0] for e in tensorrt_log] == ["compile", "save"]
    assert tensorrt_log[0] == ("compile", ((1, 3, H, W), (1, 1, H, W)), False)  # refittable weights
    assert tensorrt_log[1] == ("save", "exported_program")

    tensorrt_log.clear()
    engine = load_engine(tmp_path / "trt", model, second, "m", device="cpu")
    assert [e[0] for e in tensorrt_log] == ["load", "refit"]
    with torch.no_grad():
        grey = vis[:, 1:2].expand(-1, 3, -1, -1)  # a channel-expanded view: the engine makes it contiguous
        torch.testing.assert_close(engine(grey, ir), model(grey, ir, plan=second).fused, atol=1e-4, rtol=0)
    assert tensorrt_log[-1] == ("call", (1, 3, H, W), True)

    exports = []
    real_export = torch.export.export
    monkeypatch.setattr(torch.export, "export", lambda *a, **k: exports.append(1) or real_export(*a, **k))
    tensorrt_log.clear()
    assert engine.set_plan(first) > 0.0
    assert exports == [] and tensorrt_log == [("refit", True)]  # a weight refit, no export
    with torch.no_grad():
        torch.testing.assert_close(engine(vis, ir), model(vis, ir, plan=first).fused, atol=1e-4, rtol=0)
    assert engine.set_plan(first) == 0.0  # the same plan: nothing to do
