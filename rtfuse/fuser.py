"""`Fuser`: the numpy-in, numpy-out face of the model, used by the CLI, pipeline and evaluator."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from rtfuse.checkpoint import load_checkpoint
from rtfuse.color import as_rgb, rgb_to_gray
from rtfuse.engine import Engine, check_backend, create_engine, load_engine, model_sha256
from rtfuse.engine.aside import BACKEND as AUTO_COMPILED, EngineAside, compiler_missing
from rtfuse.engine.backends import cached_artifact
from rtfuse.engine.fold import stages_spec
from rtfuse.errors import ParameterError, RtfuseError
from rtfuse.imageio import check_same_hw, to_float01
from rtfuse.model import FusionNet, Plan, create_model

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = "rt.pt"
FrameInput = np.ndarray | torch.Tensor  # a numpy image, or its prepared engine input


def shipped_weights_path() -> Path:
    """Where the package keeps its trained weights (``python -m rtfuse_train package`` writes there)."""
    return Path(__file__).resolve().parent / "weights" / DEFAULT_WEIGHTS


def default_weights_path() -> Path | None:
    """The trained weights shipped inside the package, if this build has them."""
    path = shipped_weights_path()
    return path if path.is_file() else None


def _unit_tensor(img: np.ndarray) -> torch.Tensor:
    """(H,W) or (H,W,C) -> (1,C,H,W) float32 in [0,1].

    uint8 (every camera and video frame) is converted and transposed in one strided copy into a
    preallocated planar tensor, then scaled in place: a quarter of the cost of making the
    interleaved bytes contiguous first.
    """
    if img.dtype == np.uint8:
        src = torch.from_numpy(img)
        src = src[None] if src.ndim == 2 else src.permute(2, 0, 1)
        out = torch.empty((1, *src.shape), dtype=torch.float32)
        out[0].copy_(src)
        return out.mul_(1.0 / 255.0)
    f = to_float01(img)
    return torch.from_numpy(np.ascontiguousarray(f[None] if f.ndim == 2 else f.transpose(2, 0, 1)))[None]


def is_gray_rgb(img: np.ndarray) -> bool:
    """RGB whose three channels are identical: grey stored as colour (TNO and other sets do this)."""
    if img.ndim != 3 or img.shape[2] != 3:
        return False
    sample = img[::16, ::16]  # cheap rejection of real colour frames before the full check
    if not (np.array_equal(sample[..., 0], sample[..., 1]) and np.array_equal(sample[..., 1], sample[..., 2])):
        return False
    return np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


def prepare_visible(vis: np.ndarray) -> torch.Tensor:
    """The engine input of a visible frame, (1,3|1,H,W) float32 on the CPU.

    Grey stored as RGB takes the grey path, so enhancement cannot tint it.
    """
    if is_gray_rgb(vis):
        return _unit_tensor(np.ascontiguousarray(vis[..., 0]))
    if vis.ndim == 2 or (vis.ndim == 3 and vis.shape[2] == 3):
        return _unit_tensor(vis)
    raise RtfuseError(f"visible image must be (H,W) or (H,W,3), got shape {vis.shape}")


def prepare_infrared(ir: np.ndarray) -> torch.Tensor:
    """The engine input of an infrared frame, (1,1,H,W) float32 on the CPU."""
    if ir.ndim == 3:
        ir = rgb_to_gray(ir) if ir.shape[2] == 3 else ir[..., 0]
    if ir.ndim != 2:
        raise RtfuseError(f"infrared image must be (H,W), got shape {ir.shape}")
    return _unit_tensor(ir)


def to_uint8_image(t: torch.Tensor) -> np.ndarray:
    """(1,C,H,W) float in [0,1] -> (H,W,3) uint8 RGB (gray is replicated), rounded to nearest.

    Each plane is clipped, scaled and saturated by OpenCV (convertScaleAbs would mirror negative
    values, hence the zero threshold first) and the planes are interleaved by cv2.merge: about
    0.3 ms at 640x480 against 6 ms for the same steps as torch ops on a permuted view.
    """
    planes = t[0].detach().to("cpu", torch.float32).numpy()
    u8 = [cv2.convertScaleAbs(cv2.threshold(p, 0.0, 0.0, cv2.THRESH_TOZERO)[1], alpha=255.0) for p in planes]
    return cv2.merge(u8 * 3 if len(u8) == 1 else u8)


class Fuser:
    """Fuse registered visible/infrared numpy frames into a uint8 RGB image of the input size.

    A clip computes its ``plan`` once (``plan_for``) and passes it to every call; without one,
    each call plans for itself. ``backend`` picks the inference engine (rtfuse.engine): ``eager``
    runs the model's sparse path; the others run the folded network, one engine per frame size,
    switched to a new plan by a weight update. ``engine`` is an exported artifact to load
    (``rtfuse export``); without it aoti/tensorrt build one on first use and cache it. ``auto``
    fuses on the eager path while the aoti engine builds aside (rtfuse.engine.aside) and switches
    to it when it is ready, from the first frame once it is cached (``switches`` says when).
    """

    def __init__(
        self,
        model: FusionNet,
        *,
        trained: bool,
        source: str = "",
        device: str = "cpu",
        backend: str = "eager",
        precision: str | None = None,
        engine: str | Path | None = None,
        checkpoint: str | Path | None = None,
    ):
        self.auto = backend == "auto"
        if self.auto and (precision not in (None, "fp32") or engine is not None):
            raise ParameterError("`backend` auto compiles an fp32 engine itself: no `precision` or `engine` with it")
        check_backend("eager" if self.auto else backend, precision, device, engine)
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.trained = trained
        self.source = source
        self.backend, self.precision, self.engine_path, self.checkpoint = backend, precision, engine, checkpoint
        self._engines: dict[tuple, Engine] = {}  # by size; auto: by size and PKDM stage set
        self._aside: dict[tuple[int, int], EngineAside | None] = {}  # None: this size stays eager
        self.calls = 0
        self.switches: list[dict[str, object]] = []  # auto: when each frame size left the eager engine
        self.last_engine = "eager" if self.auto else backend  # the engine that fused the last frame
        self._model_hash: str | None = None
        self.timings: dict[str, float] = {}
        if not trained:
            log.warning("no trained weights loaded (%s): the model is UNTRAINED and its output is not meaningful", source or "random init")

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", **engine_options) -> "Fuser":
        model, meta = load_checkpoint(path)
        return cls(model, trained=bool(meta.get("trained", True)), source=str(path), device=device, checkpoint=path, **engine_options)

    @classmethod
    def default(cls, device: str = "cpu", model: str = "rt", **engine_options) -> "Fuser":
        """Packaged trained weights where present, else an untrained model (with a warning).

        The untrained model is seeded so that every process builds the same one: exported
        engines (checked by weight hash) stay valid across runs.
        """
        path = default_weights_path()
        if path is not None and model == "rt":
            return cls.from_checkpoint(path, device, **engine_options)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            net = create_model(model)
        return cls(net, trained=False, source=f"untrained {model!r}", device=device, **engine_options)

    @property
    def model_hash(self) -> str:
        """What exported engines are checked against: checkpoint file hash, else weight hash."""
        if self._model_hash is None:
            self._model_hash = model_sha256(self.model, self.checkpoint)
        return self._model_hash

    def engine(self, plan: Plan, height: int, width: int) -> Engine:
        """The engine for this frame size (built on first use), switched to ``plan``."""
        key = (height, width) if self.backend in ("aoti", "tensorrt") else (0, 0)
        engine = self._engines.get(key)
        if engine is None:
            engine = create_engine(
                self.backend, self.model, plan, model_hash=self.model_hash, height=height, width=width,
                device=str(self.device), precision=self.precision, artifact=self.engine_path,
            )
            self._engines[key] = engine
            return engine
        return self._switched(engine, plan)

    def _switched(self, engine: Engine, plan: Plan) -> Engine:
        """``engine`` switched to ``plan`` (a weight update when the plan changed, timed)."""
        switch = engine.set_plan(plan)
        if switch:
            self.timings["plan_switch"] = switch
        return engine

    def _compiled_when_ready(self, plan: Plan, height: int, width: int) -> Engine | None:
        """``auto``: the compiled engine of this size and the plan's PKDM stages once it is ready
        (switched to ``plan``), else None.

        The engine computes only the stages the plan needs (a clean scene: none), a quarter of its
        time; a later plan that needs another stage set fuses on the eager engine while that set's
        engine builds.
        """
        key = (height, width, plan.active_stages)
        engine = self._engines.get(key)
        if engine is None:
            engine = self._take_aside(key, plan)
            if engine is None:
                return None
            self._engines[key] = engine
            stages = stages_spec(plan.active_stages)
            self.switches.append({"engine": AUTO_COMPILED, "size": f"{width}x{height}", "stages": stages, "frame": self.calls})
            log.info("fusing %dx%d frames on the compiled %s engine (PKDM stages: %s) from frame %d",
                     width, height, AUTO_COMPILED, stages, self.calls)
        return self._switched(engine, plan)

    def _take_aside(self, key: tuple[int, int, tuple[bool, ...]], plan: Plan) -> Engine | None:
        if key not in self._aside:
            self._aside[key] = self._start_aside(key, plan)
        aside = self._aside[key]
        if aside is None:
            return None
        if aside.error is not None:
            log.warning("staying on the eager engine: %s", aside.error)
            self._aside[key] = None
        return aside.engine

    def _start_aside(self, key: tuple[int, int, tuple[bool, ...]], plan: Plan) -> EngineAside | None:
        reason = compiler_missing()
        if reason is not None:
            log.warning("staying on the eager engine: the compiled engine needs %s", reason)
            return None
        height, width, stages = key
        device = str(self.device)
        artifact = cached_artifact(AUTO_COMPILED, self.model_hash, height, width, "fp32", device, stages)
        args = ["--height", str(height), "--width", str(width), "--precision", "fp32", "--device", device,
                "--stages", stages_spec(stages)]
        if self.checkpoint is not None:
            args += ["--checkpoint", str(self.checkpoint)]
        aside = EngineAside(artifact, args, lambda path: load_engine(path, self.model, plan, self.model_hash, device))
        if aside.cached:
            aside.tidy()
            aside.engine = load_engine(artifact, self.model, plan, self.model_hash, device)  # compiled from the first frame
            return aside
        log.warning("fusing on the eager engine while the compiled %s engine for %dx%d builds aside (about a "
                    "minute, once; cached in %s for every later run)", AUTO_COMPILED, width, height, artifact.parent)
        aside.start()
        return aside

    def _tensors(self, vis: FrameInput, ir: FrameInput) -> tuple[torch.Tensor, torch.Tensor]:
        v = vis if isinstance(vis, torch.Tensor) else prepare_visible(vis)
        i = ir if isinstance(ir, torch.Tensor) else prepare_infrared(ir)
        check_same_hw(v.shape[-2:], i.shape[-2:])
        return v.to(self.device), i.to(self.device)

    @torch.inference_mode()
    def plan_for(self, vis: FrameInput, ir: FrameInput) -> Plan:
        """Degradation vector -> expert plan for a clip (run once, off the hot path)."""
        v, i = self._tensors(vis, ir)
        return self.model.plan_for(as_rgb(v), i)

    @torch.inference_mode()
    def __call__(self, vis: FrameInput, ir: FrameInput, plan: Plan | None = None) -> np.ndarray:
        """Fuse one pair: numpy frames, or tensors from prepare_visible / prepare_infrared."""
        t0 = time.perf_counter()
        v, i = self._tensors(vis, ir)
        t1 = time.perf_counter()
        timings = {"preprocess": t1 - t0}
        if plan is None:
            plan = self.model.plan_for(as_rgb(v), i)
            timings["plan"] = time.perf_counter() - t1
            t1 = time.perf_counter()
        self.timings = timings
        compiled = self._compiled_when_ready(plan, v.shape[-2], v.shape[-1]) if self.auto else None
        self.calls += 1
        if self.auto:
            self.last_engine = compiled.name if compiled is not None else "eager"
        if compiled is not None:
            fused = compiled(as_rgb(v), i)
        elif self.backend in ("eager", "auto"):
            fused = self.model(v, i, plan=plan).fused
        else:
            fused = self.engine(plan, v.shape[-2], v.shape[-1])(as_rgb(v), i)
        t2 = time.perf_counter()
        out = to_uint8_image(fused)
        timings.update(inference=t2 - t1, postprocess=time.perf_counter() - t2)
        return out
