"""Inference backends behind one interface: ``engine(vis, ir) -> fused`` and ``engine.set_plan(plan)``.

All take float32 (B,3,H,W) visible and (B,1,H,W) infrared in [0,1] and return float32 (B,3,H,W).
``eager`` runs the sparse plan path of the model; the others run the folded static network
(rtfuse.engine.fold), so a plan switch rewrites weights and never recompiles:
``compiled`` (torch.compile, in-place weight copy), ``aoti`` (torch.export + AOTInductor package,
constant update), ``tensorrt`` (torch-tensorrt, refit).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import torch

from rtfuse import defaults
from rtfuse.engine.aoti_abi import load_aoti_model
from rtfuse.engine.artifact import VERSION, Sidecar, artifact_paths
from rtfuse.engine.fold import ALL_STAGES, FoldedNet, dense_plan, fold, parse_stages, plan_tensors, refold, stages_spec
from rtfuse.errors import ParameterError, RtfuseError
from rtfuse.model import FusionNet, Plan

log = logging.getLogger(__name__)

BACKENDS = defaults.BACKENDS
EXPORTABLE = defaults.EXPORTABLE_BACKENDS
PRECISIONS = dict(zip(defaults.PRECISIONS, (torch.float32, torch.bfloat16, torch.float16)))


def inductor_options(device: str) -> dict[str, bool]:
    """Inductor settings for the folded network on ``device``.

    On CPU, Inductor's layout optimisation stores every convolution input channels-last, the
    3-channel full-resolution images included, and the element-wise PKDM and output passes over
    them then compile to scalar loops with stride-3 loads. Off, those passes are vectorised and
    the network is 10-15% faster (docs/engines.md). GPUs keep the default.
    """
    return {"layout_optimization": False} if torch.device(device).type == "cpu" else {}


def check_precision(precision: str, device: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ParameterError(f"unknown `precision` {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "fp16" and not device.startswith("cuda"):
        raise ParameterError("`precision` fp16 is for GPUs; on the CPU use `precision` bf16 (or fp32)")
    return PRECISIONS[precision]


def tensorrt_missing(device: str) -> list[str]:
    """What the tensorrt backend lacks here (empty when it can run)."""
    missing = []
    try:
        import torch_tensorrt  # noqa: F401
    except ImportError:
        missing.append("the torch_tensorrt package (install the 'trt' extra; it must match torch " + torch.__version__.split("+")[0].rsplit(".", 1)[0] + ")")
    if not (device.startswith("cuda") and torch.cuda.is_available()):
        missing.append("an NVIDIA GPU (`device` cuda)")
    return missing


def require_tensorrt(device: str) -> None:
    missing = tensorrt_missing(device)
    if missing:
        raise ParameterError("`backend` tensorrt is unavailable here: it needs " + " and ".join(missing))


def check_backend(backend: str, precision: str | None = None, device: str = "cpu", artifact: str | Path | None = None) -> None:
    """Refuse an engine set-up that cannot work, before anything is built (the one place that knows)."""
    if backend not in BACKENDS:
        raise ParameterError(f"unknown `backend` {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "tensorrt":
        require_tensorrt(device)
    if backend == "eager" and precision not in (None, "fp32"):
        raise ParameterError(f"`backend` eager runs fp32, not `precision` {precision}; "
                             "choose `backend` compiled or aoti for bf16/fp16")
    if precision is not None:
        check_precision(precision, device)
    if artifact is not None and backend not in EXPORTABLE:
        raise ParameterError(f"`engine` loads {'/'.join(EXPORTABLE)} artifacts; it does not apply to `backend` {backend}")


class Engine:
    """A plan-switchable fusion function."""

    name = ""

    def __init__(self, model: FusionNet, plan: Plan, device: str):
        self.model, self.plan, self.device = model, plan, device

    def __call__(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def set_plan(self, plan: Plan) -> float:
        """Switch to ``plan``; returns the seconds it took (0 when the plan is unchanged)."""
        if plan == self.plan:
            return 0.0
        t0 = time.perf_counter()
        self._apply_plan(plan)
        self.plan = plan
        return time.perf_counter() - t0

    def _apply_plan(self, plan: Plan) -> None:
        raise NotImplementedError


class EagerEngine(Engine):
    """The model's sparse plan path (``dense``: all experts computed, the unrouted cost)."""

    def __init__(self, model: FusionNet, plan: Plan, device: str = "cpu", dense: bool = False):
        super().__init__(model, plan, device)
        self.dense = dense
        self.name = "eager-dense" if dense else "eager"
        self._apply_plan(plan)

    def _apply_plan(self, plan: Plan) -> None:
        self._run_plan = dense_plan(plan, self.model.cfg.num_experts) if self.dense else plan

    def __call__(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return self.model(vis, ir, plan=self._run_plan).fused


def folded_module(
    model: FusionNet, plan: Plan, device: str, precision: str, channels_last: bool, stages: tuple[bool, ...] = ALL_STAGES
) -> FoldedNet:
    dtype = check_precision(precision, device)
    folded = fold(model, plan, stages).to(device=device, dtype=dtype)
    return folded.to(memory_format=torch.channels_last) if channels_last else folded


class CompiledEngine(Engine):
    """torch.compile of the folded network; a plan switch copies weights into the same tensors."""

    name = "compiled"

    def __init__(
        self, model: FusionNet, plan: Plan, device: str = "cpu", precision: str = "fp32",
        channels_last: bool = True,
    ):
        super().__init__(model, plan, device)
        self.folded = folded_module(model, plan, device, precision, channels_last)
        # one stream, one size: static kernels
        self.fn = torch.compile(self.folded, dynamic=False, options=inductor_options(device))

    def _apply_plan(self, plan: Plan) -> None:
        refold(self.folded, plan)

    def __call__(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return self.fn(vis, ir)


def _example_inputs(height: int, width: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    vis = torch.rand(1, 3, height, width, generator=g).to(device)
    ir = torch.rand(1, 1, height, width, generator=g).to(device)
    return vis, ir


class _ArtifactEngine(Engine):
    """Shared part of the exported backends: a sidecar-checked artifact and a folded template
    whose plan tensors are pushed into the compiled artifact on a plan switch."""

    def __init__(self, model: FusionNet, plan: Plan, artifact: Path, model_hash: str, device: str):
        super().__init__(model, plan, device)
        self.artifact = artifact
        _, sidecar_path = artifact_paths(artifact, self.name)
        self.sidecar = Sidecar.read(sidecar_path)
        if self.sidecar.backend != self.name:
            raise RtfuseError(f"{sidecar_path}: a {self.sidecar.backend} artifact, not {self.name}")
        self.sidecar.check(sidecar_path, model_hash, device)
        if not artifact.is_file():
            raise RtfuseError(f"{artifact}: engine artifact missing (sidecar {sidecar_path} exists)")
        self.folded = folded_module(
            model, plan, device, self.sidecar.precision, self.sidecar.channels_last, parse_stages(self.sidecar.stages)
        )

    def inputs(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Size-checked, contiguous inputs: an exported program is compiled for its example inputs'
        layout, and a grey visible frame arrives as a channel-expanded view of one plane."""
        h, w = vis.shape[-2:]
        if (h, w) != (self.sidecar.height, self.sidecar.width):
            raise RtfuseError(
                f"{self.artifact}: engine takes {self.sidecar.width}x{self.sidecar.height} (WxH), got {w}x{h}; export one for this size"
            )
        return vis.contiguous(), ir.contiguous()


class AOTIEngine(_ArtifactEngine):
    """A loaded AOTInductor package; plan switch = the plan constants rewritten in place.

    On CPU the package runs through its C interface, which releases the GIL (engine.aoti_abi).
    """

    name = "aoti"

    def __init__(self, model: FusionNet, plan: Plan, artifact: Path, model_hash: str, device: str = "cpu"):
        super().__init__(model, plan, artifact, model_hash, device)
        self.runner = load_aoti_model(artifact, device)
        fqns = set(self.runner.constant_fqns())
        self.plan_names = list(plan_tensors(self.folded, plan))
        absent = [n for n in self.plan_names if n not in fqns]
        if absent:
            raise RtfuseError(f"{artifact}: plan tensors are not updatable constants of the package (e.g. {absent[0]}); re-export it")
        # the package reads its plan constants from the template's tensors, which refold rewrites in place
        state = dict(self.folded.named_parameters()) | dict(self.folded.named_buffers())
        self.runner.use_constants({n: state[n] for n in self.plan_names})

    def _apply_plan(self, plan: Plan) -> None:
        refold(self.folded, plan)

    def __call__(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return self.runner(*self.inputs(vis, ir))[0]

    @staticmethod
    def build(folded: FoldedNet, out: Path, inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
        with torch.no_grad():
            program = torch.export.export(folded, inputs)
            # keep every weight a named constant: inductor would inline small (<= 8) bias vectors
            # into the code, and plan tensors must stay updatable
            torch._inductor.aoti_compile_and_package(
                program,
                package_path=str(out),
                inductor_configs={"always_keep_tensor_constants": True, **inductor_options(inputs[0].device.type)},
            )


class TensorRTEngine(_ArtifactEngine):
    """A saved torch-tensorrt program (FP16 kernels where faster); a plan switch is a weight refit.

    The refit reads its weights from one program of the folded template, exported when the engine
    loads: a plan switch copies the plan tensors into it and refits, without exporting again.
    """

    name = "tensorrt"

    def __init__(self, model: FusionNet, plan: Plan, artifact: Path, model_hash: str, device: str = "cuda"):
        require_tensorrt(device)
        import torch_tensorrt

        super().__init__(model, plan, artifact, model_hash, device)
        self.example = _example_inputs(self.sidecar.height, self.sidecar.width, device)
        self.module = torch_tensorrt.load(str(artifact)).module()
        with torch.no_grad():
            self.weights = torch.export.export(self.folded, self.example)
        self._apply_plan(plan)

    @torch.no_grad()
    def _apply_plan(self, plan: Plan) -> None:
        from torch_tensorrt.dynamo import refit_module_weights

        refold(self.folded, plan)
        state = self.weights.state_dict
        for name, value in plan_tensors(self.folded, plan).items():
            state[name].copy_(value)
        self.module = refit_module_weights(self.module, self.weights, arg_inputs=list(self.example), in_place=True)

    def __call__(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return self.module(*self.inputs(vis, ir))

    @staticmethod
    def build(folded: FoldedNet, out: Path, inputs: tuple[torch.Tensor, torch.Tensor], precision: str) -> None:
        import torch_tensorrt

        enabled = {torch.float16, torch.float32} if precision == "fp16" else {torch.float32}
        with torch.no_grad():
            program = torch.export.export(folded, inputs)
            trt_module = torch_tensorrt.dynamo.compile(
                program, arg_inputs=list(inputs), enabled_precisions=enabled, immutable_weights=False
            )
            torch_tensorrt.save(trt_module, str(out), output_format="exported_program", arg_inputs=list(inputs))


def export_engine(
    backend: str,
    model: FusionNet,
    plan: Plan,
    out: str | Path,
    *,
    height: int,
    width: int,
    model_hash: str,
    device: str = "cpu",
    precision: str | None = None,
    channels_last: bool | None = None,
    stages: tuple[bool, ...] = ALL_STAGES,
) -> tuple[Path, Path]:
    """Compile the folded network for ``backend`` and write artifact + sidecar; returns both paths.

    The plan only seeds the plan tensors: loading sets the running plan. ``stages``: the PKDM stages
    compiled in (engine.fold); the engine then serves only plans that need no other stage.
    """
    if backend not in EXPORTABLE:
        raise RtfuseError(f"backend {backend!r} has no artifact; export supports {', '.join(EXPORTABLE)}")
    if backend == "tensorrt":
        require_tensorrt(device)
    precision = precision or ("fp16" if backend == "tensorrt" else "fp32")
    channels_last = (backend == "aoti" and not device.startswith("cuda")) if channels_last is None else channels_last
    artifact, sidecar_path = artifact_paths(out, backend)
    artifact.parent.mkdir(parents=True, exist_ok=True)
    module_precision = "fp32" if backend == "tensorrt" else precision
    seed = dataclasses.replace(plan, stage_strengths=tuple(s if on else 0.0 for s, on in zip(plan.stage_strengths, stages)))
    folded = folded_module(model, seed, device, module_precision, channels_last, stages)
    if backend == "tensorrt":
        check_precision(precision, device)
    inputs = _example_inputs(height, width, device)
    t0 = time.perf_counter()
    if backend == "aoti":
        AOTIEngine.build(folded, artifact, inputs)
    else:
        TensorRTEngine.build(folded, artifact, inputs, precision)
    log.info("compiled %s engine %s in %.1f s", backend, artifact, time.perf_counter() - t0)
    Sidecar(
        backend=backend, artifact=artifact.name, model=model.cfg.name, checkpoint_sha256=model_hash,
        height=height, width=width, precision=precision, device=device,
        channels_last=channels_last, torch=str(torch.__version__), stages=stages_spec(stages),
    ).write(sidecar_path)
    return artifact, sidecar_path


def load_engine(artifact: str | Path, model: FusionNet, plan: Plan, model_hash: str, device: str = "cpu") -> Engine:
    """Load an exported artifact (``export/NAME``, ``NAME.pt2``/``.ep`` or ``NAME.json``)."""
    artifact = Path(artifact)
    for backend, cls in (("aoti", AOTIEngine), ("tensorrt", TensorRTEngine)):
        path, sidecar = artifact_paths(artifact, backend)
        if path.is_file() or (sidecar.is_file() and Sidecar.read(sidecar).backend == backend):
            return cls(model, plan, path, model_hash, device)
    raise RtfuseError(f"{artifact}: no engine artifact (.pt2 or .ep with a .json sidecar) there")


def cache_dir() -> Path:
    """Where engines built on demand are kept (RTFUSE_CACHE, default ~/.cache/rtfuse/engines)."""
    return Path(os.environ.get("RTFUSE_CACHE", Path.home() / ".cache" / "rtfuse")) / "engines"


def cached_artifact(
    backend: str, model_hash: str, height: int, width: int, precision: str, device: str,
    stages: tuple[bool, ...] = ALL_STAGES,
) -> Path:
    """Where the engine cache keeps this model's engine for one size, precision, device, torch and
    PKDM stage set (an engine with every stage keeps the name it had before stage sets existed)."""
    tag = f"{backend}-v{VERSION}-{model_hash[:16]}-{width}x{height}-{precision}-{device}-torch{torch.__version__}"
    if not all(stages):
        tag += f"-pkdm-{stages_spec(stages).replace(',', '+')}"
    return cache_dir() / tag


def create_engine(
    backend: str,
    model: FusionNet,
    plan: Plan,
    *,
    model_hash: str,
    height: int,
    width: int,
    device: str = "cpu",
    precision: str | None = None,
    artifact: str | Path | None = None,
) -> Engine:
    """An engine for frames of ``height`` x ``width``.

    Exported backends load ``artifact`` when given, else build one into ``cache_dir()`` the first
    time this model/size/precision/torch is asked for and reuse it afterwards.
    """
    check_backend(backend, precision, device, artifact)
    if backend == "eager":
        return EagerEngine(model, plan, device)
    if backend == "compiled":
        return CompiledEngine(model, plan, device, precision or "fp32")
    if artifact is None:
        prec = precision or ("fp16" if backend == "tensorrt" else "fp32")
        artifact = cached_artifact(backend, model_hash, height, width, prec, device)
        built, _ = artifact_paths(artifact, backend)
        if not built.is_file():
            # a minute or more of silence otherwise: say it at the default log level
            log.warning("building the %s engine for %dx%d, once (about a minute on a small CPU; cached in %s)",
                        backend, width, height, built)
            export_engine(backend, model, plan, artifact, height=height, width=width, model_hash=model_hash, device=device, precision=prec)
    return load_engine(artifact, model, plan, model_hash, device)

