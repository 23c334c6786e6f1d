"""Checkpoints: one file with config, state dict and metadata, loaded with weights_only=True.

Every failure (missing, truncated, not ours, mismatched) becomes one RtfuseError line naming the
file and the problem.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from rtfuse.errors import RtfuseError
from rtfuse.model import FusionConfig, FusionNet

FORMAT = "rtfuse-checkpoint"
VERSION = 1


def save_checkpoint(
    path: str | Path, model: FusionNet, metadata: dict[str, Any] | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write atomically (temp file + rename) so an interrupted save never leaves a truncated file.

    ``dtype=torch.float16`` stores floating-point tensors at half size (the packaged weights);
    loading casts them back to the model's float32.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "torch": str(torch.__version__),
    }
    meta.update(metadata or {})
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.cfg.to_dict(),
        "state_dict": {
            k: v.detach().cpu().to(dtype) if dtype is not None and v.is_floating_point() else v.detach().cpu()
            for k, v in model.state_dict().items()
        },
        "metadata": meta,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RtfuseError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
        detail = [l for l in lines if "Unpickler error" in l or "Unsupported" in l]
        reason = (detail or lines or [type(exc).__name__])[0][:200]
        raise RtfuseError(f"{path}: not a readable checkpoint (truncated or corrupt: {reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RtfuseError(f"{path}: not an rtfuse checkpoint (no '{FORMAT}' header)")
    if payload.get("version", 0) > VERSION:
        raise RtfuseError(f"{path}: checkpoint version {payload['version']} is newer than this rtfuse ({VERSION})")
    return payload


def _config(path: str | Path, payload: dict[str, Any]) -> FusionConfig:
    try:
        return FusionConfig.from_dict(payload["config"])
    except (RtfuseError, TypeError) as exc:
        raise RtfuseError(f"{path}: invalid model config in checkpoint: {exc}") from None


def load_checkpoint(path: str | Path, config: FusionConfig | None = None) -> tuple[FusionNet, dict[str, Any]]:
    """Rebuild the model from the checkpoint's own config (or check it against ``config``)."""
    payload = read_checkpoint(path)
    cfg = _config(path, payload)
    if config is not None and config != cfg:
        raise RtfuseError(f"{path}: checkpoint is model {cfg.name!r}, expected {config.name!r} with matching config")
    model = FusionNet(cfg)
    state = payload["state_dict"]
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (e.g. {wrong[0]}: {tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)})")
        raise RtfuseError(f"{path}: checkpoint does not match model {cfg.name!r}: " + "; ".join(parts))
    model.load_state_dict(state)
    return model.eval(), payload.get("metadata", {})


def read_dagm(path: str | Path) -> tuple[FusionConfig, dict[str, torch.Tensor]]:
    """The config and DAGM tensors of a checkpoint, whatever the rest of its network looks like.

    Stage 2 takes only the degradation module from stage 1, so a stage-1 checkpoint stays usable
    after the fusion network's layout changes.
    """
    payload = read_checkpoint(path)
    cfg = _config(path, payload)
    prefix = "dagm."
    state = {k[len(prefix):]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise RtfuseError(f"{path}: checkpoint holds no DAGM tensors")
    return cfg, state


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
