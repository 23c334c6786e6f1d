"""Engines: gate folding is exact, every CPU backend matches the sparse eager path on real images,
plan switches are weight updates (no recompilation), artifacts are checked by their sidecar."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rtfuse.cli import main as cli_main
from rtfuse.engine import (
    CompiledEngine,
    EagerEngine,
    Sidecar,
    aoti_abi,
    artifact_paths,
    create_engine,
    dense_plan,
    embed_kernel,
    export_engine,
    fold,
    load_engine,
    parse_stages,
    plan_tensors,
    refold,
    stages_spec,
    state_dict_sha256,
    tensorrt_missing,
)
from rtfuse.engine.backends import cached_artifact
from rtfuse.errors import ParameterError, RtfuseError
from rtfuse.fuser import Fuser, prepare_infrared, prepare_visible
from rtfuse.imageio import read_image
from rtfuse.model import LayerPlan, Plan, create_model

TOL = 1e-4
CROP = (96, 128)  # compiled tests: compile time grows with the graph, not the image; keep frames small
# The compiled/aoti tests (marked slow) compile the whole rt network once each (module fixtures):
# about 1 CPU-minute each on this 2-core machine.


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("rt").eval()


@pytest.fixture(scope="module")
def frames(shared_data):
    """Two real MSRS pairs (night, day) as float tensors."""
    out = []
    for name in ("00004N.png", "00055D.png"):
        vis = prepare_visible(read_image(shared_data / "msrs" / "vi" / name))
        ir = prepare_infrared(read_image(shared_data / "msrs" / "ir" / name, gray=True))
        out.append((vis, ir))
    return out


@pytest.fixture(scope="module")
def plans(model, frames):
    """The plan of the night frame and one from another degradation vector (different experts)."""
    with torch.inference_mode():
        first = model.plan_for(*frames[0])
        second = model.plan(torch.randn(1, model.cfg.deg_dim, generator=torch.Generator().manual_seed(3)))
    assert [l.experts for l in first.layers] != [l.experts for l in second.layers]
    return first, second


@pytest.fixture(scope="module")
def crops(frames):
    h, w = CROP
    return [(v[..., 100 : 100 + h, 200 : 200 + w].contiguous(), i[..., 100 : 100 + h, 200 : 200 + w].contiguous()) for v, i in frames]


def _eager(model, plan, vis, ir):
    with torch.inference_mode():
        return model(vis, ir, plan=plan).fused


@pytest.mark.parametrize("kernel", [(1, 3, 1), (5, 1, 1), (3, 3, 1), (3, 3, 2), (5, 5, 1), (1, 1, 1)])
def test_embedded_kernel_is_the_same_convolution(kernel):
    kh, kw, dil = kernel
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 4, 19, 23, generator=g)
    w = torch.randn(4, 1, kh, kw, generator=g)
    expected = F.conv2d(x, w, padding=(dil * (kh // 2), dil * (kw // 2)), dilation=dil, groups=4)
    got = F.conv2d(x, embed_kernel(w, dil, 5), padding=2, groups=4)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_fold_equals_sparse_eager_on_real_images(model, frames, plans):
    halves = [(v[..., 121:358, 161:478], i[..., 121:358, 161:478]) for v, i in frames]  # 317x237: U-Net pads
    for plan in plans:
        folded = fold(model, plan)
        for vis, ir in halves:
            with torch.inference_mode():
                diff = (folded(vis, ir) - _eager(model, plan, vis, ir)).abs().max().item()
            assert diff <= TOL


@pytest.mark.parametrize("base", ["pyramid", "max"])
def test_fold_keeps_the_configured_base(frames, base):
    torch.manual_seed(1)
    model = create_model("rt", base=base).eval()
    vis, ir = (x[..., 121:358, 161:478] for x in frames[0])  # odd sizes: the pyramid's borders
    with torch.inference_mode():
        plan = model.plan_for(vis, ir)
        diff = (fold(model, plan)(vis, ir) - _eager(model, plan, vis, ir)).abs().max().item()
    assert diff <= TOL


def test_fold_of_the_model_without_pkdm_skips_it_like_eager(frames):
    torch.manual_seed(2)
    model = create_model("rt-nopkdm").eval()
    vis, ir = (x[..., 121:358, 161:478] for x in frames[0])
    with torch.inference_mode():
        plan = model.plan_for(vis, ir)
        diff = (fold(model, plan)(vis, ir) - _eager(model, plan, vis, ir)).abs().max().item()
    assert diff <= TOL


def test_dense_plan_computes_all_experts_with_the_same_result(model, crops, plans):
    vis, ir = crops[0]
    dense = dense_plan(plans[0], model.cfg.num_experts)
    assert all(len(l.experts) == model.cfg.num_experts for l in dense.layers)
    torch.testing.assert_close(_eager(model, dense, vis, ir), _eager(model, plans[0], vis, ir), atol=1e-6, rtol=0)


def test_refold_equals_fold_of_the_new_plan(model, plans):
    folded = fold(model, plans[0])
    storage = {k: v.data_ptr() for k, v in folded.state_dict().items()}
    refold(folded, plans[1])
    fresh = fold(model, plans[1]).state_dict()
    for name, value in folded.state_dict().items():
        assert torch.equal(value, fresh[name]), name
        assert value.data_ptr() == storage[name], f"{name} was reallocated"


def test_layer_with_fewer_experts_folds_with_empty_slots(model, crops, plans):
    """A softmax weight can underflow to 0 and drop out of the plan; the slot must be inert."""
    layers = list(plans[0].layers)
    layers[0] = LayerPlan(layers[0].experts[:1], (1.0,))
    plan = Plan(tuple(layers), plans[0].stage_strengths)
    vis, ir = crops[0]
    with torch.inference_mode():
        diff = (fold(model, plan)(vis, ir) - _eager(model, plan, vis, ir)).abs().max().item()
    assert diff <= TOL


def _with_strengths(plan: Plan, strengths: tuple[float, ...]) -> Plan:
    return dataclasses.replace(plan, stage_strengths=strengths)


def test_stage_sets_parse_and_spell_back():
    assert parse_stages("all") == (True, True, True) and parse_stages("none") == (False, False, False)
    assert parse_stages("derain, lowlight") == (False, True, True)
    for spec in ("all", "none", "lowlight,derain", "dehaze"):
        assert stages_spec(parse_stages(spec)) == spec
    with pytest.raises(ParameterError, match="`stages` takes all, none or a comma list of dehaze, lowlight, derain"):
        parse_stages("sharpen")


def test_folded_network_without_the_gated_off_stages_equals_eager(model, frames, plans):
    vis, ir = (x[..., 121:358, 161:478] for x in frames[0])
    for strengths, stages in (((0.0, 0.0, 0.0), "none"), ((0.0, 0.7, 0.0), "lowlight"), ((0.0, 0.7, 0.0), "all")):
        plan = _with_strengths(plans[0], strengths)
        folded = fold(model, plan, parse_stages(stages))
        with torch.inference_mode():
            assert (folded(vis, ir) - _eager(model, plan, vis, ir)).abs().max().item() <= TOL
        assert ("blend" in plan_tensors(folded, plan)) == (stages != "none")  # no stage, no blend constant


def test_folded_network_refuses_a_plan_that_needs_a_stage_it_lacks(model, plans):
    folded = fold(model, _with_strengths(plans[0], (0.0, 0.0, 0.0)), parse_stages("none"))
    with pytest.raises(RtfuseError, match="needs the PKDM stage.s. lowlight, which this engine was built without .stages none."):
        refold(folded, _with_strengths(plans[0], (0.0, 0.4, 0.0)))


def test_cache_names_a_stage_subset_and_keeps_the_full_engine_name():
    full = cached_artifact("aoti", "ab" * 32, 480, 640, "fp32", "cpu")
    assert full == cached_artifact("aoti", "ab" * 32, 480, 640, "fp32", "cpu", parse_stages("all"))
    assert cached_artifact("aoti", "ab" * 32, 480, 640, "fp32", "cpu", parse_stages("none")).name == full.name + "-pkdm-none"
    assert cached_artifact("aoti", "ab" * 32, 480, 640, "fp32", "cpu", parse_stages("dehaze,derain")).name.endswith("-pkdm-dehaze+derain")


@pytest.fixture(scope="module")
def compiled(model, plans):
    return CompiledEngine(model, plans[0])


@pytest.mark.slow
def test_compiled_matches_eager_and_switches_plans_without_recompiling(model, compiled, crops, plans):
    vis, ir = crops[0]
    with torch.inference_mode():
        assert (compiled(vis, ir) - _eager(model, plans[0], vis, ir)).abs().max().item() <= TOL
        switch_s = compiled.set_plan(plans[1])
        with torch._dynamo.config.patch(error_on_recompile=True):
            for vis, ir in crops:
                assert (compiled(vis, ir) - _eager(model, plans[1], vis, ir)).abs().max().item() <= TOL
        compiled.set_plan(plans[0])
    assert switch_s < 1.0  # a weight copy (acceptance: <= 50 ms on an idle core; this machine is shared)


@pytest.fixture(scope="module")
def aoti(model, plans, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "rt"
    h, w = CROP
    export_engine("aoti", model, plans[0], out, height=h, width=w, model_hash=state_dict_sha256(model))
    return out


@pytest.mark.slow
def test_aoti_package_matches_eager_and_updates_constants(model, aoti, crops, plans):
    t0 = time.perf_counter()
    engine = load_engine(aoti, model, plans[1], state_dict_sha256(model))
    assert time.perf_counter() - t0 < 10.0  # loads the compiled package, no recompilation
    with torch.inference_mode():
        for vis, ir in crops:
            assert (engine(vis, ir) - _eager(model, plans[1], vis, ir)).abs().max().item() <= TOL
        switch_s = engine.set_plan(plans[0])
        vis, ir = crops[0]
        assert (engine(vis, ir) - _eager(model, plans[0], vis, ir)).abs().max().item() <= TOL
    assert switch_s < 1.0


@pytest.mark.slow
def test_aoti_engine_releases_the_gil_while_it_runs(model, aoti, crops, plans):
    """Another Python thread keeps running during the engine call (capture decodes meanwhile).

    A thread that held the GIL through the run would leave the heartbeat thread a gap as long
    as the run itself; released, the heartbeats go on beside it.
    """
    engine = load_engine(aoti, model, plans[0], state_dict_sha256(model))
    vis, ir = crops[0]
    calls: list[tuple[float, float]] = []
    beats: list[float] = []
    done = threading.Event()

    def heartbeat() -> None:
        while not done.is_set():
            beats.append(time.perf_counter())
            time.sleep(0)  # hand the GIL back at once

    thread = threading.Thread(target=heartbeat)
    thread.start()
    try:
        with torch.inference_mode():
            for _ in range(30):
                t0 = time.perf_counter()
                engine.runner(vis, ir)
                calls.append((t0, time.perf_counter()))
                time.sleep(0.002)
    finally:
        done.set()
        thread.join()
    stamps = np.array(beats)
    gaps = []
    for t0, t1 in calls:
        around = stamps[(stamps > t0 - 0.05) & (stamps < t1 + 0.05)]
        spans = np.minimum(around[1:], t1) - np.maximum(around[:-1], t0)  # gap overlap with the call
        gaps.append(spans.max() / (t1 - t0) if len(spans) else 1.0)
    assert np.median(gaps) < 0.5, f"longest heartbeat gap per call / call time: median {np.median(gaps):.2f}"


@pytest.mark.slow
def test_aoti_package_without_the_c_functions_runs_through_torch(model, aoti, crops, plans, monkeypatch, caplog):
    """A package from a torch whose AOTInductor runtime lacks a function still runs (GIL held)."""
    monkeypatch.setitem(aoti_abi._SIGNATURES, "AOTInductorNoSuchFunction", [])
    with caplog.at_level(logging.WARNING, logger="rtfuse"):
        engine = load_engine(aoti, model, plans[0], state_dict_sha256(model))
    assert "lacks AOTInductorNoSuchFunction" in caplog.text
    assert isinstance(engine.runner, aoti_abi.PackageLoaderModel)
    vis, ir = crops[0]
    with torch.inference_mode():
        assert (engine(vis, ir) - _eager(model, plans[0], vis, ir)).abs().max().item() <= TOL


@pytest.mark.slow
def test_aoti_package_is_refused_when_not_a_package(model, aoti, plans, tmp_path):
    artifact, sidecar = artifact_paths(aoti, "aoti")
    broken = tmp_path / "broken"
    shutil.copy(sidecar, broken.with_name("broken.json"))
    broken.with_name("broken.pt2").write_bytes(b"not a zip archive")
    with pytest.raises(RtfuseError, match="not an AOTInductor package"):
        load_engine(broken, model, plans[0], state_dict_sha256(model))


@pytest.mark.slow
def test_aoti_engine_is_built_on_first_use_and_cached(model, crops, plans, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RTFUSE_CACHE", str(tmp_path))
    vis, ir = crops[0]
    size = {"model_hash": state_dict_sha256(model), "height": vis.shape[-2], "width": vis.shape[-1]}
    with caplog.at_level(logging.WARNING, logger="rtfuse"):
        create_engine("aoti", model, plans[0], **size)
    assert "building the aoti engine for 128x96, once" in caplog.text  # said at the default log level
    assert len(list((tmp_path / "engines").glob("*.pt2"))) == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rtfuse"):
        again = create_engine("aoti", model, plans[1], **size)
    assert "building" not in caplog.text
    with torch.inference_mode():
        assert (again(vis, ir) - _eager(model, plans[1], vis, ir)).abs().max().item() <= TOL


@pytest.mark.slow
def test_aoti_engine_refuses_other_sizes(model, aoti, plans):
    engine = load_engine(aoti, model, plans[0], state_dict_sha256(model))
    with pytest.raises(RtfuseError, match="engine takes 128x96"):
        engine(torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64))


@pytest.mark.slow
def test_sidecar_mismatch_is_refused(model, aoti, plans, tmp_path):
    artifact, sidecar = artifact_paths(aoti, "aoti")
    for field, value, message in (
        ("checkpoint_sha256", "0" * 64, "exported from model 000000000000"),
        ("torch", "1.0.0", "built with torch 1.0.0"),
        ("version", 1, "engine format 1, this rtfuse runs format 2"),
    ):
        copy = tmp_path / field
        shutil.copy(artifact, copy.with_name(copy.name + ".pt2"))
        data = json.loads(sidecar.read_text()) | {field: value}
        copy.with_name(copy.name + ".json").write_text(json.dumps(data))
        with pytest.raises(RtfuseError, match=message):
            load_engine(copy, model, plans[0], state_dict_sha256(model))
    other = create_model("rt")  # different random weights, so a different hash
    with pytest.raises(RtfuseError, match="re-export it with this checkpoint"):
        load_engine(aoti, other, plans[0], state_dict_sha256(other))
    assert Sidecar.read(sidecar).backend == "aoti"


@pytest.mark.slow
def test_fuser_runs_an_exported_engine(model, aoti, plans, shared_data):
    h, w = CROP
    vis = read_image(shared_data / "msrs" / "vi" / "00055D.png")[100 : 100 + h, 200 : 200 + w]
    ir = read_image(shared_data / "msrs" / "ir" / "00055D.png", gray=True)[100 : 100 + h, 200 : 200 + w]
    eager = Fuser(model, trained=False)
    engine = Fuser(model, trained=False, backend="aoti", engine=aoti)
    for plan in (eager.plan_for(vis, ir), plans[1]):
        expected = eager(vis, ir, plan=plan)
        assert np.abs(engine(vis, ir, plan=plan).astype(int) - expected.astype(int)).max() <= 1
    assert "plan_switch" in engine.timings
    grey = np.ascontiguousarray(vis[..., 1])  # reaches the engine as a channel-expanded view
    assert np.abs(engine(grey, ir, plan=plans[1]).astype(int) - eager(grey, ir, plan=plans[1]).astype(int)).max() <= 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_tensorrt_missing_is_one_clear_error(model, capsys):
    assert any("NVIDIA GPU" in m for m in tensorrt_missing("cpu"))
    with pytest.raises(RtfuseError, match=r"^`backend` tensorrt is unavailable here: it needs .*NVIDIA GPU \(`device` cuda\)"):
        Fuser(model, trained=False, backend="tensorrt")
    assert cli_main(["export", "--backend", "tensorrt", "--height", "64", "--width", "64", "-o", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--backend tensorrt is unavailable here" in err[0] and "(--device cuda)" in err[0]


def test_eager_engine_is_the_model_plan_path(model, crops, plans):
    vis, ir = crops[1]
    engine = EagerEngine(model, plans[0])
    assert engine.set_plan(plans[1]) >= 0.0
    with torch.inference_mode():
        torch.testing.assert_close(engine(vis, ir), _eager(model, plans[1], vis, ir), atol=0, rtol=0)
