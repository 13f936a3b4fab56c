"""The look the pipeline dreams with, and the switch that crossfades to the next one.

A ``Look`` is one built dream: the preset's name, the config it makes, the engine, the
processor (``coherence.mode``) and, for a live source, its ``LiveDream`` (slot, dream
step, published state; see ``live.py``). ``run`` dreams with one look; ``serve`` switches
looks without a gap: a new one is built and warmed up elsewhere (``service/director.py``),
and ``switch_to`` only hands it over. For ``crossfade`` seconds both looks dream every
frame and their pictures are blended, old to new; then the old one is dropped.

The only thing the dream worker and the builder share is ``Showing``, a frozen record of
what is on screen, replaced whole; ``last_input`` and ``last_output`` are references to
read-only frames and pictures, replaced, never changed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Config
from ..frames import Frame, IdleFrame, freeze
from ..runtime.observer import PipelineObserver
from ..sources.blend import BlendInputs, blend_images, fit_to
from .live import LiveDream

if TYPE_CHECKING:  # the processors come with TensorFlow; this module is imported before it loads
    from ..coherence.processors import DreamProcessor

log = logging.getLogger(__name__)


def make_processor(config: Config, engine: Any, observer: PipelineObserver | None = None) -> DreamProcessor:
    """The frame processor for ``config.coherence.mode`` (independent, blend or flow)."""
    from ..coherence.processors import processor_class  # noqa: PLC0415 - loads Keras and its backend

    cls = processor_class(config.coherence.mode, engine)
    return cls(engine, config.coherence, width=config.dream.width, observer=observer)


@dataclass(frozen=True)
class Look:
    preset: str
    config: Config
    engine: Any  # DreamEngine
    processor: Any  # DreamProcessor, or anything with process(frame) -> Frame
    live: LiveDream | None = None  # set for live sources: the dream runs beside the frames

def build_look(
    preset: str,
    config: Config,
    engine: Any,
    *,
    live: bool,
    observer: PipelineObserver | None = None,
    warm_on: Frame | None = None,
    shown: bool = True,
) -> Look:
    """A look for ``config``; a live one is warmed up on ``warm_on`` (see ``LiveDream.warm_up``)."""
    processor = make_processor(config, engine, observer)
    # a one-pass engine (a student) dreams every frame it shows, in line: no refresh beside the frames
    dream = LiveDream(processor, observer) if live and not getattr(engine, "one_pass", False) else None
    if dream is not None and warm_on is not None:
        dream.warm_up(warm_on, shown=shown)
    return Look(preset, config, engine, processor, dream)


@dataclass(frozen=True)
class Showing:
    """What is on screen: a look, and while crossfading the one fading in."""

    current: Look
    incoming: Look | None = None
    fade_start: float = 0.0
    fade_seconds: float = 0.0

    def progress(self, now: float) -> float:
        if self.incoming is None or self.fade_seconds <= 0:
            return 1.0
        return (now - self.fade_start) / self.fade_seconds

    @property
    def looks(self) -> tuple[Look, ...]:
        return (self.current,) if self.incoming is None else (self.current, self.incoming)


class LookSwitch:
    """The pipeline's dreamer: ``process`` on the dream worker, ``switch_to`` from the builder."""

    def __init__(self, look: Look, blends: BlendInputs | None = None) -> None:
        self._showing = Showing(look)
        # the second inputs (dream.blend_with), blended into each frame before its look dreams it
        self.blends = blends
        # the factor on the blend's share for a frame (audio-reactive dreaming's `blend`)
        self.blend_modulation: Callable[[Frame], float] | None = None
        self._replacing = threading.Lock()  # two writers; readers take the reference as it is
        self.last_input: Frame | None = None  # the latest real input frame, to warm the next look on
        self.last_output: np.ndarray | None = None  # the latest picture out, for the idle animation
        # the dream's strength factor for a frame (audio-reactive dreaming), applied to the shown detail
        self.modulation: Callable[[Frame], float] | None = None

    @property
    def showing(self) -> Showing:
        return self._showing

    @property
    def current(self) -> Look:
        return self._showing.current

    @property
    def incoming(self) -> Look | None:
        return self._showing.incoming

    def live_dreams(self) -> list[LiveDream]:
        """The live dreams the dream-refresh worker keeps fresh."""
        return [look.live for look in self._showing.looks if look.live is not None]

    def switch_to(self, look: Look, crossfade: float) -> None:
        """Start fading to ``look``; a switch during a fade finishes the first one at once."""
        with self._replacing:
            showing = self._showing
            current = showing.incoming or showing.current
            self._showing = Showing(current, look, time.monotonic(), crossfade)
        if showing.incoming is not None:
            _retire(showing.current)
        if self.blends is not None:
            self.blends.get(look.config.dream)  # its second input opens now, while the look fades in

    def rename(self, look: Look) -> None:
        """Relabel the running look (a preset with the same settings as the one shown)."""
        with self._replacing:
            showing = self._showing
            if showing.incoming is not None and showing.incoming.processor is look.processor:
                self._showing = Showing(showing.current, look, showing.fade_start, showing.fade_seconds)
            elif showing.current.processor is look.processor:
                self._showing = Showing(look, showing.incoming, showing.fade_start, showing.fade_seconds)

    def process(self, frame: Frame) -> Frame:
        showing = self._showing
        progress = showing.progress(time.monotonic())
        if showing.incoming is not None and progress >= 1.0:
            showing = self._finish_fade(showing)
        if not isinstance(frame, IdleFrame):
            self.last_input = frame
        gain = 1.0 if self.modulation is None else self.modulation(frame)
        share = 1.0 if self.blend_modulation is None else self.blend_modulation(frame)
        image = _dream(showing.current, self._blended(showing.current, frame, share), gain)
        if showing.incoming is not None:
            new = _dream(showing.incoming, self._blended(showing.incoming, frame, share), gain)
            a = float(np.clip(progress, 0.0, 1.0))
            blended = (1.0 - a) * image.astype(np.float32) + a * new.astype(np.float32)
            image = freeze(np.clip(blended + 0.5, 0, 255).astype(np.uint8))
        self.last_output = image
        return Frame(image, frame.index, frame.pts, frame.captured_at)

    def _blended(self, look: Look, frame: Frame, share: float) -> Frame:
        """``frame`` blended with ``look``'s second input (``dream.blend_with``): what the look dreams,
        and what its flow follows. The frame as it is without one, while it is down, or idle."""
        dream = look.config.dream
        ratio = min(1.0, dream.blend * share)
        if self.blends is None or dream.blend_with is None or isinstance(frame, IdleFrame):
            return frame
        other = self.blends.picture(dream, frame)  # read even at ratio 0: a synced second input keeps its place
        if other is None or ratio <= 0.0:
            return frame
        fitted = fit_to(other, frame.width, frame.height, dream.blend_fit)
        mixed = blend_images(frame.image, fitted, ratio, dream.blend_mode)
        return Frame(freeze(np.clip(mixed + 0.5, 0, 255).astype(np.uint8)), frame.index, frame.pts, frame.captured_at)

    def _finish_fade(self, showing: Showing) -> Showing:
        with self._replacing:
            if self._showing is showing:  # else switch_to() already moved on
                incoming = showing.incoming
                assert incoming is not None, "a fade that finishes has an incoming look"
                self._showing = Showing(incoming)
                _retire(showing.current)
                log.info("now showing preset %s", incoming.preset)
            return self._showing

    def close(self) -> None:
        for look in self._showing.looks:
            _retire(look)
        if self.blends is not None:
            self.blends.close()


def _dream(look: Look, frame: Frame, gain: float) -> np.ndarray:
    if look.live is not None:
        look.live.offer(frame)
        return look.live.show(frame, gain)
    if gain == 1.0:  # any object with process(frame) may be a look's processor
        return look.processor.process(frame).image
    return look.processor.process(frame, gain).image


def _retire(look: Look) -> None:
    close = getattr(look.processor, "close", None)
    if close is not None:
        close()


__all__ = ["Look", "LookSwitch", "Showing", "build_look", "make_processor"]
