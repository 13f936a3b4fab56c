"""The pipeline's processor under `serve`: the running look, swapped without a gap.

A new look (preset, strength or reloaded config) is built and warmed up elsewhere (see
``director.py``); ``switch_to`` only hands it over. For ``crossfade`` seconds both the old
and the new processor dream every frame and their outputs are blended, old to new; then
the old one is closed. Everything here runs on the dream thread except ``switch_to``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Config
from ..frames import Frame, freeze
from ..pipeline.runner import FrameProcessor
from .idle import IdleFrame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Look:
    """One built look: the preset's name, the config it makes, and its engine and processor."""

    preset: str
    config: Config
    engine: Any  # DreamEngine
    processor: FrameProcessor


class SwitchableProcessor:
    """A FrameProcessor that delegates to the current look and crossfades to the next."""

    def __init__(self, look: Look) -> None:
        self._lock = threading.Lock()
        self._current = look
        self._incoming: Look | None = None
        self._fade_start = 0.0
        self._fade_seconds = 0.0
        self.last_output: np.ndarray | None = None  # for the idle animation
        self.last_input: Frame | None = None  # to warm up the next look on

    @property
    def current(self) -> Look:
        return self._current

    @property
    def incoming(self) -> Look | None:
        return self._incoming

    def switch_to(self, look: Look, crossfade: float) -> None:
        """Start fading to ``look``; a switch during a fade finishes the first one at once."""
        retired = None
        with self._lock:
            if self._incoming is not None:
                retired, self._current = self._current, self._incoming
            self._incoming = look
            self._fade_start = time.monotonic()
            self._fade_seconds = crossfade
        if retired is not None:
            self._retire(retired)

    def rename(self, look: Look) -> None:
        """Relabel the running look (a preset with the same settings as the one shown)."""
        with self._lock:
            if self._incoming is not None and self._incoming.processor is look.processor:
                self._incoming = look
            elif self._current.processor is look.processor:
                self._current = look

    def process(self, frame: Frame) -> Frame:
        with self._lock:
            current, incoming = self._current, self._incoming
            progress = 1.0 if incoming is None or self._fade_seconds <= 0 else (time.monotonic() - self._fade_start) / self._fade_seconds
        if incoming is not None and progress >= 1.0:
            with self._lock:
                finished = self._incoming is incoming  # else a new switch_to() already moved on
                if finished:
                    self._current, self._incoming = incoming, None
            if finished:
                self._retire(current)
                log.info("now showing preset %s", incoming.preset)
            current, incoming = incoming, None
        if not isinstance(frame, IdleFrame):
            self.last_input = frame
        out = self._run(current, frame)
        if incoming is not None:
            new = self._run(incoming, frame)
            a = float(np.clip(progress, 0.0, 1.0))
            blended = (1.0 - a) * out.image.astype(np.float32) + a * new.image.astype(np.float32)
            out = dataclasses.replace(new, image=freeze(np.clip(blended + 0.5, 0, 255).astype(np.uint8)))
        self.last_output = out.image
        return out

    def _run(self, look: Look, frame: Frame) -> Frame:
        return look.processor.process(frame)  # the processor reports its own dream steps

    def _retire(self, look: Look, wait: bool = False) -> None:
        """Close a look; off the dream thread, since a live dreamer finishes its step in flight first."""
        close = getattr(look.processor, "close", None)
        if close is None:
            return

        def run() -> None:
            try:
                close()
            except Exception as exc:  # the old look is gone either way; say why it did not close
                log.warning("closing the previous look (%s) failed: %s", look.preset, exc)

        if wait:
            run()
        else:
            threading.Thread(target=run, name="retire-look", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            looks = [self._current] + ([self._incoming] if self._incoming is not None else [])
            self._incoming = None
        for look in looks:
            self._retire(look, wait=True)
