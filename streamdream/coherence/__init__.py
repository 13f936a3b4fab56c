"""Temporal coherence: optical flow, warping, occlusion masks, warm starts, scene cuts.

The processors (``processors.py``, one per ``coherence.mode``: independent, blend, flow)
dream with TensorFlow; flow, carrying, scene cuts and ``evaluate`` need only OpenCV. This
file only hands names on, and only when asked, so ``streamdream evaluate`` never
imports TensorFlow. The pipeline builds processors with ``pipeline.looks.make_processor``
and runs them live with ``pipeline.live``.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "BlendProcessor": "processors",
    "DreamProcessor": "processors",
    "FlowProcessor": "processors",
    "IndependentProcessor": "processors",
    "PROCESSORS": "processors",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_WHERE)
