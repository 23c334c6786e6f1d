"""The entry points: :func:`degrade_pair` for one numpy pair, :func:`degrade_batch` for a batch of tensors.

One implementation serves both APIs: the kernels work on batched torch tensors with per-sample
severities, and :func:`degrade_pair` runs them on a batch of one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from rtfuse.degrade.physics import Tensor
from rtfuse.degrade.registry import DEGRADATIONS, Spec, normalise_spec
from rtfuse.errors import RtfuseError


def _step_generator(seed: int, step: int, kind: str) -> torch.Generator:
    """Independent stream per (seed, position, kind), so adding a step never reshuffles the others."""
    kind_id = list(DEGRADATIONS).index(kind)
    state = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, step, kind_id]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


def _to_unit_float(img: np.ndarray, what: str) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(img, 0.0, 1.0).astype(np.float32)
    raise RtfuseError(f"{what}: unsupported dtype {img.dtype} (use float in [0,1] or uint8)")


def _from_unit_float(img: np.ndarray, dtype: np.dtype) -> np.ndarray:
    img = np.clip(img, 0.0, 1.0)
    if dtype == np.uint8:
        return np.round(img * 255.0).astype(np.uint8)
    return img.astype(dtype)


def degrade_pair(vis: np.ndarray, ir: np.ndarray, spec: str | Spec, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Degrade one registered pair: vis (H,W,3) RGB and ir (H,W), float in [0,1] (or uint8).

    Returns new arrays of the input dtypes and ranges; severity 0 (or an empty spec) returns
    unchanged copies. The same (inputs, spec, seed) always gives the same output.
    """
    if vis.ndim != 3 or vis.shape[2] != 3:
        raise RtfuseError(f"visible must be (H,W,3) RGB, got shape {vis.shape}")
    if ir.ndim != 2:
        raise RtfuseError(f"infrared must be (H,W), got shape {ir.shape}")
    if vis.shape[:2] != ir.shape:
        raise RtfuseError(f"visible {vis.shape[:2]} and infrared {ir.shape} differ in size (HxW); register them first")
    v = torch.from_numpy(_to_unit_float(vis, "visible")).permute(2, 0, 1)[None]
    i = torch.from_numpy(_to_unit_float(ir, "infrared"))[None, None]
    for step, (kind, severity) in enumerate(normalise_spec(spec)):
        if severity <= 0.0:
            continue
        s = torch.tensor([severity], dtype=torch.float32)
        v, i = DEGRADATIONS[kind].apply(v, i, s, _step_generator(seed, step, kind))
        v, i = v.clamp(0.0, 1.0), i.clamp(0.0, 1.0)
    vis_d = _from_unit_float(v[0].permute(1, 2, 0).numpy(), vis.dtype)
    ir_d = _from_unit_float(i[0, 0].numpy(), ir.dtype)
    return vis_d, ir_d


def degrade_batch(
    vis: Tensor,
    ir: Tensor,
    kinds: Sequence[str],
    severities: Tensor | Sequence[float],
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Degrade a batch: vis (B,3,H,W), ir (B,1,H,W) float in [0,1]; one kind per sample.

    ``kinds[b]`` is a degradation name, a composite name, or ``"clean"``; ``severities[b]`` in [0,1].
    Samples are grouped by kind and each group runs as one vectorised call (rain and blur loop
    per sample in OpenCV), so a DataLoader worker can call this on a whole batch. Inputs are not
    modified. Randomness comes only from ``generator`` (a fresh unseeded one if None).
    """
    b = vis.shape[0]
    if vis.ndim != 4 or vis.shape[1] != 3 or ir.ndim != 4 or ir.shape[1] != 1:
        raise RtfuseError(f"expected vis (B,3,H,W) and ir (B,1,H,W), got {tuple(vis.shape)} and {tuple(ir.shape)}")
    if ir.shape[0] != b or ir.shape[2:] != vis.shape[2:] or len(kinds) != b:
        raise RtfuseError(f"batch mismatch: vis {tuple(vis.shape)}, ir {tuple(ir.shape)}, {len(kinds)} kinds")
    sev = torch.as_tensor(severities, dtype=torch.float32).reshape(-1)
    if sev.numel() != b:
        raise RtfuseError(f"{sev.numel()} severities for a batch of {b}")
    if not bool(((sev >= 0.0) & (sev <= 1.0)).all()):
        raise RtfuseError(f"severities must be in [0, 1], got {sev.tolist()}")
    gen = generator if generator is not None else torch.Generator()
    if generator is None:
        gen.seed()
    out_v, out_i = vis.clone(), ir.clone()
    for name in sorted(set(kinds) - {"clean"}):
        members = [j for j, k in enumerate(kinds) if k == name]
        idx = torch.tensor(members, device=vis.device)
        for part, severity in normalise_spec([(name, 1.0)]):
            s = (sev[members] * severity).clamp(0.0, 1.0)
            active = s > 0.0
            if not bool(active.any()):
                continue
            sub = idx[active.to(idx.device)]
            s = s[active].to(device=vis.device, dtype=vis.dtype)
            v, i = DEGRADATIONS[part].apply(out_v[sub], out_i[sub], s, gen)
            out_v[sub] = v.clamp(0.0, 1.0)
            out_i[sub] = i.clamp(0.0, 1.0)
    return out_v, out_i

