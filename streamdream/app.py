"""One assembly, from a validated ``Config``, for every command that runs the pipeline.

``assemble`` builds the parts in the order that fails fastest: the outputs' URIs are
parsed (a typo fails now), the input is opened (a missing file fails now), and only then
is the first look built (TensorFlow and the model load: seconds). ``run``, ``serve`` and
``bench`` all go through it; what differs is said by arguments:

* ``run`` and ``bench``: the configured source as it is, one look, outputs that must open
  at start;
* ``serve`` (``daemon=True``): a ``ReconnectingSource`` (never ends; idle frames while the
  input is down), looks built and switched by the daemon's director, outputs retried.

``Assembly.pipeline()`` makes a pipeline over these parts; the daemon's watchdog calls it
again to rebuild a stuck one.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .audio import AudioReact
from .backend import prepare
from .coherence.passes import TwoPassProcessor
from .config import Config, OutputConfig
from .errors import ConfigError
from .frames import Frame, SourceInfo
from .models.loader import load_dream_model
from .models.student_file import StudentFile, check_teacher, load_student, resolve_student
from .pipeline.looks import Look, LookSwitch, build_look
from .pipeline.outputs import OutputSet
from .pipeline.runner import Pipeline, PipelineResult
from .runtime.observer import PipelineObserver
from .runtime.workers import Workers
from .sources import ParsedUri, open_source, parse_uri
from .sources.blend import BlendInputs

log = logging.getLogger(__name__)


def build_teacher(config: Config):  # -> DreamEngine; imported lazily: TensorFlow is slow to import
    """The full dream (gradient ascent) of ``config``, whatever ``dream.engine`` says."""
    prepare(config.engine)  # before the backend is imported (a no-op when the CLI already did)
    from .dream.engine import DreamEngine  # noqa: PLC0415 - loads Keras and its backend

    model = load_dream_model(config.model, config.engine.precision, config.engine.fold_batchnorm)
    return DreamEngine(model, config.dream, config.engine)


def load_checked_student(config: Config) -> StudentFile:
    """``dream.student`` read and checked against the config's teacher (no TensorFlow)."""
    student = load_student(resolve_student(config.dream.student, config.model))
    check_teacher(student, config.model, config.dream)
    return student


def build_engine(config: Config):  # -> DreamEngine or StudentEngine
    """The engine ``dream.engine`` names: the full dream, or a student standing in for it."""
    if config.dream.engine != "student":
        return build_teacher(config)
    student = load_checked_student(config)  # a wrong or damaged file fails before TensorFlow loads
    prepare(config.engine)
    from .dream.student import StudentEngine  # noqa: PLC0415 - loads Keras and its backend

    return StudentEngine(student, config.dream, config.model, config.engine)


def progress_factory(enabled: bool, max_frames: int | None = None):
    """A tqdm bar for files (frames, fps, ETA); a counter with rate for live sources."""
    if not enabled:
        return None

    def make(info: SourceInfo):
        total = None if info.live else info.frame_count
        if max_frames and (total is None or max_frames < total):
            total = max_frames
        return tqdm(total=total, unit="frame", desc="live" if info.live else "dreaming", file=sys.stderr, dynamic_ncols=True)

    return make


def audio_source_of(parsed: ParsedUri) -> str | None:
    """The real path whose audio a file output carries: only plain file inputs have one."""
    return parsed.target if parsed.kind == "file" and Path(parsed.target).is_file() else None


@dataclass
class Assembly:
    """The parts of a running dream; ``pipeline()`` joins them up."""

    config: Config
    source: Any  # Source; a ReconnectingSource under `serve`
    info: SourceInfo
    looks: LookSwitch
    observer: PipelineObserver
    workers: Workers
    daemon: bool
    audio_source: str | None = None
    audio_react: Any = None  # AudioReact, when config.audio_react is set and the input has audio

    def outputs(self, configs: Sequence[OutputConfig] | None = None) -> OutputSet:
        config = self.config
        return OutputSet(
            configs if configs is not None else config.outputs, audio_source=self.audio_source, observer=self.observer,
            reconnect=config.reconnect, retry_first_open=self.daemon, queue_size=config.pipeline.queue_size,
        )  # fmt: skip

    def pipeline(self, outputs: OutputSet | None = None) -> Pipeline:
        config = self.config
        source = self.source.view() if self.daemon else self.source
        return Pipeline(
            source, self.looks, outputs or self.outputs(), queue_size=config.pipeline.queue_size,
            max_frames=config.pipeline.max_frames, workers=self.workers, observer=self.observer,
            progress=None if self.daemon else progress_factory(config.pipeline.progress, config.pipeline.max_frames),
            opened=self.info,
        )  # fmt: skip


LookFactory = Callable[[Config, SourceInfo], Look]


def assemble(
    config: Config,
    workers: Workers,
    *,
    daemon: bool = False,
    observer: PipelineObserver | None = None,
    first_look: LookFactory | None = None,
    engine: Any = None,
    source: Any = None,
) -> Assembly:
    """Build source, first look and the output check from ``config`` (see the module docstring).

    ``workers``: the owner of every thread the assembly starts (the run's or the daemon's,
    which stops and joins it);
    ``first_look`` builds the look to start with once the input's size is known (the
    daemon's director passes its own); ``engine`` reuses a loaded DreamEngine (bench);
    ``source`` replaces the configured one (the daemon's reconnecting source).
    """

    observer = observer or PipelineObserver()
    parsed = parse_uri(config.source.uri)  # once: every part below takes the parsed input
    audio = None if daemon else audio_source_of(parsed)
    # 1. a bad output URI is reported now, not after the input opened and the model loaded
    OutputSet(config.outputs, audio_source=audio)
    # 2. the input: a missing file or a dead server fails before TensorFlow loads
    react = _audio_react(config, parsed, observer) if not daemon else None
    source = source or open_source(config.source, workers=workers, audio=react.tap if react is not None and react.live else None,
                                   parsed=parsed)  # fmt: skip
    info = source.open()
    # 3. the first look (the model loads here)
    try:
        if first_look is None:
            engine = engine or build_engine(config)
            look = build_look("default", config, engine, live=info.live, observer=observer)
        else:
            look = first_look(config, info)
        if config.coherence.passes == 2:
            look = _two_passes(config, look, info, parsed, workers)
    except BaseException:
        source.close()
        raise
    blends = BlendInputs(config.source, synced=not info.live, reconnect=config.reconnect, workers=workers, observer=observer)
    looks = LookSwitch(look, blends)
    if config.dream.blend_with is not None:
        blends.get(look.config.dream)  # the second input opens beside the first, before the first frame
    if react is not None and not info.has_audio:
        log.warning("audio_react: %s has no audio track; the dream's strength does not follow any sound", info.uri)
        react = None
    if react is not None:
        if not react.live:
            react.start_file(parsed.target, workers)
        looks.modulation = react.strength
        if config.audio_react is not None and config.audio_react.blend is not None:
            looks.blend_modulation = react.blend
    return Assembly(config, source, info, looks, observer, workers, daemon, audio, react)


def _two_passes(config: Config, look: Look, info: SourceInfo, parsed: ParsedUri, workers: Workers) -> Look:
    """``look`` dreaming in two passes (``coherence/passes.py``): the first pass and the backward
    second one read the input a second time, before the pipeline's first frame goes out."""
    if info.live or config.source.loop:
        raise ConfigError(f"two passes (coherence.passes set to 2) need a file input read once, got "
                          f"{'a live input' if info.live else 'source.loop true'} ({info.uri}); use one pass")
    if config.coherence.mode != "flow":
        raise ConfigError(f"two passes (coherence.passes set to 2) need coherence.mode flow, got {config.coherence.mode}")
    group = workers.group("two-pass")

    def frames() -> Iterator[Frame]:
        second = open_source(config.source, workers=group, parsed=parsed)
        second.open()
        try:
            yield from itertools.islice(second.frames(), config.pipeline.max_frames)
        finally:
            second.close()

    return dataclasses.replace(look, processor=TwoPassProcessor(look.processor, frames, stopped=group.stop.is_set))


def _audio_react(config: Config, parsed: ParsedUri, observer: PipelineObserver) -> AudioReact | None:
    """Audio-reactive dreaming for ``run``: a file's track analysed ahead, a stream's heard by its reader."""
    if config.audio_react is None:
        return None
    return AudioReact(config.audio_react, live=parsed.kind != "file", observer=observer)


def run_pipeline(config: Config, workers: Workers, observer: PipelineObserver | None = None, engine=None) -> PipelineResult:
    """Dream ``config.source`` into every ``config.outputs`` until the end or ``workers``' stop;
    every thread is started in ``workers``' tree, which the caller stops and joins."""
    assembly = assemble(config, workers, observer=observer, engine=engine)
    try:
        return assembly.pipeline().run()
    finally:
        if assembly.looks.blends is not None:
            assembly.looks.blends.close()  # the second input's reader


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)
