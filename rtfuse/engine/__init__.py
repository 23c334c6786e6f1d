"""Inference engines: gate folding, compiled backends, exported artifacts, benchmarks."""

from rtfuse.engine.artifact import Sidecar, artifact_paths, model_sha256, state_dict_sha256
from rtfuse.engine.backends import (
    BACKENDS,
    EXPORTABLE,
    PRECISIONS,
    AOTIEngine,
    CompiledEngine,
    EagerEngine,
    Engine,
    TensorRTEngine,
    check_backend,
    create_engine,
    export_engine,
    load_engine,
    require_tensorrt,
    tensorrt_missing,
)
from rtfuse.engine.fold import FoldedDGME, FoldedNet, dense_plan, embed_kernel, fold, folded_weights, plan_tensors, refold

__all__ = [
    "AOTIEngine", "BACKENDS", "CompiledEngine", "EXPORTABLE", "EagerEngine", "Engine", "FoldedDGME", "FoldedNet",
    "PRECISIONS", "Sidecar", "TensorRTEngine", "artifact_paths", "check_backend", "create_engine", "dense_plan", "embed_kernel",
    "export_engine", "fold", "folded_weights", "load_engine", "model_sha256", "plan_tensors", "refold",
    "require_tensorrt", "state_dict_sha256", "tensorrt_missing",
]
