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
from rtfuse.engine.fold import (
    ALL_STAGES,
    FoldedDGME,
    FoldedNet,
    dense_plan,
    embed_kernel,
    fold,
    folded_weights,
    parse_stages,
    plan_tensors,
    refold,
    stages_spec,
)

__all__ = [
    "ALL_STAGES", "AOTIEngine", "BACKENDS", "CompiledEngine", "EXPORTABLE", "EagerEngine", "Engine", "FoldedDGME", "FoldedNet",
    "PRECISIONS", "Sidecar", "TensorRTEngine", "artifact_paths", "check_backend", "create_engine", "dense_plan", "embed_kernel",
    "export_engine", "fold", "folded_weights", "load_engine", "model_sha256", "parse_stages", "plan_tensors", "refold",
    "require_tensorrt", "stages_spec", "state_dict_sha256", "tensorrt_missing",
]
