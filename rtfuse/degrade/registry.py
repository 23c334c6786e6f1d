"""The registry of degradations and the spec language.

:class:`DegradationKind` records each kind's stage-1 class, its place in the imaging chain and its
kernel; :data:`DEGRADATIONS` and :data:`COMPOSITES` name them, and specs such as
``"haze:0.6,low_light:0.3"`` are parsed, validated, expanded and put into physical order here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rtfuse.degrade.per_sample import _blur_one, _per_sample, _rain_one
from rtfuse.degrade.physics import Kernel, _haze, _low_light, _noise, _overexposure
from rtfuse.errors import RtfuseError
from rtfuse.model.config import DEGRADATION_CLASSES as CLASSES


@dataclass(frozen=True)
class DegradationKind:
    """One registered degradation: its stage-1 class, its place in the imaging chain, its kernel."""

    name: str
    label: str
    order: int
    apply: Kernel
    vectorised: bool
    summary: str


# Physical order of the imaging chain: rain streaks sit in the scene and are attenuated by the haze
# between them and the camera (heavy-rain model I = T(J + R) + (1 - T)A); optics blur acts on the
# incoming light; scene illumination scales everything, the haze veil included (night fog is dark);
# glare comes from what is still bright; sensor noise is added last.
DEGRADATIONS: dict[str, DegradationKind] = {
    d.name: d
    for d in (
        DegradationKind("rain", "rain", 0, _per_sample(_rain_one), False,
                        "rain streaks (two depth layers, wind angle) + veil, visible; weak IR contrast loss"),
        DegradationKind("haze", "haze", 1, _haze, True,
                        "atmospheric scattering I = J t + A (1 - t), t = exp(-beta d); IR with beta x 0.15"),
        DegradationKind("blur", "noise", 2, _per_sample(_blur_one), False,
                        "rig motion blur (both) or defocus (each camera its own radius)"),
        DegradationKind("low_light", "low_light", 3, _low_light, True,
                        "exposure x k, colour cast, Poisson-Gaussian noise, shadow-crushing tone; visible only"),
        DegradationKind("overexposure", "overexposure", 4, _overexposure, True,
                        "exposure gain, sensor saturation, lens bloom around highlights; visible only"),
        DegradationKind("noise", "noise", 5, _noise, True,
                        "visible shot+read noise; IR low contrast, gain FPN, column/row stripes, temporal noise"),
    )
}

# Composite scenes (the paper's composite degradations). A composite at severity s applies each
# component at severity s * weight, in the physical order above.
COMPOSITES: dict[str, tuple[tuple[str, float], ...]] = {
    "night_fog": (("haze", 0.7), ("low_light", 0.7)),
    "rainy_night": (("rain", 1.0), ("low_light", 0.8), ("noise", 0.5)),
    "hazy_glare": (("haze", 0.6), ("overexposure", 0.5)),
}

Spec = Sequence[tuple[str, float]]


def _valid_kinds() -> str:
    return ", ".join([*DEGRADATIONS, *COMPOSITES])


def _expand(kind: str, severity: float) -> list[tuple[str, float]]:
    if kind in DEGRADATIONS:
        return [(kind, severity)]
    if kind in COMPOSITES:
        return [(part, min(1.0, severity * weight)) for part, weight in COMPOSITES[kind]]
    raise RtfuseError(f"unknown degradation {kind!r}; valid kinds: {_valid_kinds()}")


def _check_severity(kind: str, severity: float) -> float:
    if not (0.0 <= severity <= 1.0):  # also rejects NaN
        raise RtfuseError(f"severity of {kind!r} must be in [0, 1], got {severity}")
    return float(severity)


def normalise_spec(spec: str | Spec) -> list[tuple[str, float]]:
    """Validate a spec, expand composites, and sort it into physical order (stable)."""
    items = parse_spec(spec) if isinstance(spec, str) else list(spec)
    steps: list[tuple[str, float]] = []
    for kind, severity in items:
        steps.extend(_expand(kind, _check_severity(kind, severity)))
    return sorted(steps, key=lambda step: DEGRADATIONS[step[0]].order)


def parse_spec(text: str) -> list[tuple[str, float]]:
    """Parse ``"haze:0.6,low_light:0.3"``; composite names expand to their components.

    An empty string or ``"clean"`` means no degradation.
    """
    steps: list[tuple[str, float]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item or item == "clean":
            continue
        kind, sep, value = item.partition(":")
        kind = kind.strip()
        if kind not in DEGRADATIONS and kind not in COMPOSITES:
            raise RtfuseError(f"unknown degradation {kind!r} in {text!r}; valid kinds: {_valid_kinds()}")
        if not sep:
            raise RtfuseError(f"{item!r}: give a severity in [0, 1] as KIND:SEVERITY, e.g. {kind}:0.5")
        try:
            severity = float(value)
        except ValueError:
            raise RtfuseError(f"{item!r}: severity {value.strip()!r} is not a number in [0, 1]") from None
        steps.extend(_expand(kind, _check_severity(kind, severity)))
    return steps


def class_targets(spec: str | Spec) -> np.ndarray:
    """Stage-1 target over CLASSES: the severity of each class present (max over its kinds);
    ``clean`` is 1 when nothing has a severity above 0."""
    target = np.zeros(len(CLASSES), np.float32)
    for kind, severity in normalise_spec(spec):
        i = CLASSES.index(DEGRADATIONS[kind].label)
        target[i] = max(target[i], severity)
    if not target[1:].any():
        target[0] = 1.0
    return target

