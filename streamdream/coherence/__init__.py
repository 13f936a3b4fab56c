"""Temporal coherence: optical flow, warping, occlusion masks, warm starts, scene cuts.

``make_processor`` builds the ``FrameProcessor`` the pipeline runs: the configured mode
(``coherence.mode``: independent, blend or flow), wrapped for live sources in a
``LiveDreamer`` that outputs every frame at once and dreams in its own thread.
"""

from __future__ import annotations

from ..config import Config
from ..dream.engine import DreamEngine
from ..pipeline.observer import PipelineObserver
from .live import LiveDreamer
from .processors import PROCESSORS, BlendProcessor, DreamProcessor, FlowProcessor, IndependentProcessor


def make_processor(
    config: Config,
    engine: DreamEngine,
    live: bool,
    observer: PipelineObserver | None = None,
) -> DreamProcessor | LiveDreamer:
    """The frame processor for ``config.coherence.mode``; for live sources, decoupled."""
    coherence = config.coherence
    cls = PROCESSORS[coherence.mode]
    if live:
        # the live wrapper adapts to its refresh rate and reports steps itself
        inner = cls(engine, coherence, width=config.dream.width, adaptive=False)
        return LiveDreamer(inner, coherence, observer=observer)
    return cls(engine, coherence, width=config.dream.width, observer=observer)


__all__ = [
    "BlendProcessor",
    "DreamProcessor",
    "FlowProcessor",
    "IndependentProcessor",
    "LiveDreamer",
    "PROCESSORS",
    "make_processor",
]
