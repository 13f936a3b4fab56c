"""Assembling the parts a command needs from a validated Config."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import numpy as np

from .config import Config
from .frames import SourceInfo
from .pipeline.observer import PipelineObserver
from .pipeline.runner import Pipeline, PipelineResult

log = logging.getLogger(__name__)


def build_engine(config: Config):  # -> DreamEngine; imported lazily: TensorFlow is slow to import
    from .dream.engine import DreamEngine
    from .models.loader import load_dream_model

    return DreamEngine(load_dream_model(config.model), config.dream)


def progress_factory(enabled: bool, max_frames: int | None = None):
    """A tqdm bar for files (frames, fps, ETA); a counter with rate for live sources."""
    if not enabled:
        return None

    def make(info: SourceInfo):
        from tqdm import tqdm

        total = None if info.live else info.frame_count
        if max_frames and (total is None or max_frames < total):
            total = max_frames
        return tqdm(total=total, unit="frame", desc="live" if info.live else "dreaming", file=sys.stderr, dynamic_ncols=True)

    return make


def audio_source_of(uri: str) -> str | None:
    """The real path whose audio a file output carries: only plain file inputs have one."""
    if "://" in uri or uri.startswith(("demo", "webcam", "lavfi:", "image:", "/dev/video")):
        return None
    return uri if Path(uri).is_file() else None


def run_pipeline(
    config: Config,
    stop: threading.Event,
    observer: PipelineObserver | None = None,
    engine=None,
) -> PipelineResult:
    """Dream ``config.source`` into every ``config.outputs`` until the end or ``stop``."""
    from .sinks import open_sink
    from .sources import open_source

    # a bad output URI or input is reported now, not after TensorFlow and the model have loaded
    audio = audio_source_of(config.source.uri)
    sinks = [open_sink(output, audio_source=audio) for output in config.outputs]
    source = open_source(config.source)
    info = source.open()
    try:
        from .coherence import make_processor

        engine = engine or build_engine(config)
    except BaseException:
        source.close()
        raise
    pipeline = Pipeline(
        source,
        lambda info: make_processor(config, engine, live=info.live, observer=observer),
        sinks,
        queue_size=config.pipeline.queue_size,
        max_frames=config.pipeline.max_frames,
        stop=stop,
        observer=observer,
        progress=progress_factory(config.pipeline.progress, config.pipeline.max_frames),
        opened=info,
    )
    return pipeline.run()


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)
