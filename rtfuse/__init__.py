"""rtfuse: real-time infrared + visible video fusion.

``rtfuse.Fuser`` fuses numpy frames; ``rtfuse.Subscriber`` receives a published fused stream (and
raises ``rtfuse.StreamEnded`` when the publisher ends it).
Both are imported lazily so that ``import rtfuse`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Fuser", "StreamEnded", "Subscriber", "__version__"]

_LAZY = {"Fuser": "rtfuse.fuser", "StreamEnded": "rtfuse.publish", "Subscriber": "rtfuse.publish"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rtfuse' has no attribute {name!r}")
