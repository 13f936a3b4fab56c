"""Which look runs: presets, strength, the playlist and reloads, built off the dream thread.

Every change (a control request, a playlist switch, a reloaded config) becomes a request
to one builder thread. It merges what is queued (only the latest preset and strength
count), builds the new engine and processor, warms them up (the first gradient step
traces the graph: seconds on a CPU) and only then hands them to the switcher, which
crossfades. The output never waits for a model to load.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Config, DreamConfig, ModelConfig
from ..errors import ControlError
from ..frames import Frame
from ..pipeline.observer import PipelineObserver
from .playlist import DEFAULT_PRESET, Playlist, apply_preset, preset_names
from .switcher import Look, SwitchableProcessor

log = logging.getLogger(__name__)

MAX_STRENGTH = 10.0
MODEL_CACHE = 3  # models kept loaded for quick switches back
ENGINE_CACHE = 6  # dream engines (one traced graph each) kept for presets the playlist returns to
WARM_TIMEOUT = 120.0


class LookBuilder:
    """Builds engine + processor for a config. Engines are kept for the last few settings, so a
    playlist going round its presets reuses them: no new graph, no retrace, flat memory."""

    def __init__(self, observer: PipelineObserver | None = None) -> None:
        self.observer = observer or PipelineObserver()
        self._models: OrderedDict[ModelConfig, Any] = OrderedDict()
        self._engines: OrderedDict[tuple[ModelConfig, DreamConfig], Any] = OrderedDict()

    def model(self, config: ModelConfig) -> Any:
        from ..models.loader import load_dream_model

        return _cached(self._models, config, lambda: load_dream_model(config), MODEL_CACHE)

    def engine(self, config: Config) -> Any:
        from ..dream.engine import DreamEngine

        def build() -> Any:
            engine = DreamEngine(self.model(config.model), config.dream)
            engine.ascend(np.zeros((64, 64, 3), np.float32), 1)  # trace the step now, not on the dream thread
            return engine

        return _cached(self._engines, (config.model, config.dream), build, ENGINE_CACHE)

    def __call__(self, preset: str, config: Config, warm_on: Frame | None = None) -> Look:
        from ..coherence import make_processor

        engine = self.engine(config)
        processor = make_processor(config, engine, live=True, observer=self.observer)
        if warm_on is not None:
            # a live dreamer shows the bare frame until its first dream is done: have one ready
            # before the crossfade starts, or the fade would pass through the undreamed picture
            processor.process(warm_on)
            wait = getattr(processor, "wait_for_refresh", None)
            if wait is not None and not wait(1, timeout=WARM_TIMEOUT):
                log.warning("the new look's first dream took over %.0f s; fading in anyway", WARM_TIMEOUT)
        return Look(preset, config, engine, processor)


def _cached(cache: OrderedDict, key: Any, build: Callable[[], Any], size: int) -> Any:
    """LRU lookup; an evicted TensorFlow graph is freed now (its tf.function is held in a cycle)."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = build()
    if len(cache) > size:
        while len(cache) > size:
            cache.popitem(last=False)
        gc.collect()
    return value


@dataclass(frozen=True)
class _Request:
    config: Config | None = None
    preset: str | None = None
    strength: float | None = None
    reason: str = ""
    future: Future | None = None


class Director:
    """Owns the current preset, strength and playlist; implements the control API's verbs."""

    def __init__(
        self,
        config: Config,
        *,
        build: Callable[[str, Config, Frame | None], Look],
        on_switch: Callable[[Look], None] | None = None,
    ) -> None:
        self.config = config
        self._build = build
        self._on_switch = on_switch or (lambda look: None)
        self.playlist = Playlist(config.playlist)
        self.preset = self.playlist.initial()
        self.strength = 1.0
        self.switcher: SwitchableProcessor | None = None
        self.last_error: str | None = None
        self._requests: queue.Queue[_Request] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.building = False

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> SwitchableProcessor:
        """Build the first look (here, so a bad model fails the start) and the builder thread."""
        look = self._build(self.preset, self._effective(self.config, self.preset, self.strength), None)
        self.switcher = SwitchableProcessor(look)
        self._on_switch(look)
        self._thread = threading.Thread(target=self._builder, name="look-builder", daemon=True)
        self._thread.start()
        return self.switcher

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # --- requests ---------------------------------------------------------------------------

    def _effective(self, config: Config, preset: str, strength: float) -> Config:
        return apply_preset(config, config.playlist.presets.get(preset), strength)

    def _submit(self, **fields: Any) -> Future:
        future: Future = Future()
        self._requests.put(_Request(future=future, **fields))
        return future

    def reconfigure(self, config: Config) -> Future:
        """Apply a reloaded config; the future fails (and nothing changes) if it cannot be built."""
        return self._submit(config=config, reason="reload")

    def tick(self) -> None:
        """Called about once a second: start a switch the playlist says is due."""
        due = self.playlist.due(self.preset)
        if due is not None and due != self.preset:
            log.info("playlist: switching to preset %s", due)
            self.playlist.switched()  # do not ask again while this one builds
            self._submit(preset=due, reason="playlist")

    # --- control API verbs (called on HTTP threads) -------------------------------------------

    def next_preset(self) -> dict[str, Any]:
        if not self.config.playlist.presets:
            raise ControlError("no presets defined: add playlist.presets to the config")
        return self.set_preset(self.playlist.next_after(self.preset))

    def set_preset(self, name: str) -> dict[str, Any]:
        names = preset_names(self.config.playlist)
        if name not in names:
            raise ControlError(f"unknown preset {name[:64]!r}; choose one of {', '.join(names)}")
        self._submit(preset=name, reason="control")
        return {"preset": name, "status": "switching", "crossfade": self.config.playlist.crossfade}

    def set_strength(self, value: float) -> dict[str, Any]:
        if not 0.0 < value <= MAX_STRENGTH:
            raise ControlError(f"strength must be > 0 and <= {MAX_STRENGTH:g}, got {value:g}")
        self._submit(strength=value, reason="control")
        return {"strength": value, "status": "switching"}

    def state(self) -> dict[str, Any]:
        config = self.config
        switcher = self.switcher
        showing = switcher.current if switcher else None
        incoming = switcher.incoming if switcher else None
        target = incoming or showing
        effective = target.config if target else self._effective(config, self.preset, self.strength)
        return {
            "preset": self.preset,
            "showing": showing.preset if showing else None,
            "fading_to": incoming.preset if incoming else None,
            "building": self.building,
            "presets": list(preset_names(config.playlist)),
            "cycle": list(self.playlist.order) if config.playlist.presets else [],
            "strength": self.strength,
            "model": effective.model.name,
            "layers": [spec.name for spec in effective.model.layers or ()] or None,
            "layer_preset": effective.model.preset,
            "dream": {"strength": effective.dream.strength, "steps": effective.dream.steps, "octaves": effective.dream.octaves, "step_size": effective.dream.step_size},
            "coherence": effective.coherence.mode,
            "playlist": {
                "interval": config.playlist.interval,
                "crossfade": config.playlist.crossfade,
                "next_switch_in": self.playlist.seconds_to_next(),
                "schedule": [{"at": e.at, "preset": e.preset} for e in config.playlist.schedule],
            },
            "last_error": self.last_error,
        }

    # --- the builder thread -----------------------------------------------------------------

    def _builder(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self._requests.get(timeout=0.25)]
            except queue.Empty:
                continue
            while True:
                try:
                    batch.append(self._requests.get_nowait())
                except queue.Empty:
                    break
            futures = [r.future for r in batch if r.future is not None]
            try:
                look = self._apply(batch)
            except Exception as exc:  # reported to whoever asked (reload) and logged; the old look stays
                self.last_error = str(exc)
                for future in futures:
                    future.set_exception(exc)
                if not any(r.config is not None for r in batch):
                    log.error("switch failed, keeping preset %s: %s", self.preset, exc)
                continue
            for future in futures:
                future.set_result(look)

    def _apply(self, batch: list[_Request]) -> Look | None:
        config, preset, strength = self.config, self.preset, self.strength
        for request in batch:  # later requests win
            if request.config is not None:
                config = request.config
            if request.preset is not None:
                preset = request.preset
            if request.strength is not None:
                strength = request.strength
        names = preset_names(config.playlist)
        if preset not in names:  # a reload removed it
            preset = Playlist(config.playlist).initial() if config.playlist.presets else DEFAULT_PRESET
        effective = self._effective(config, preset, strength)
        switcher = self.switcher
        latest = (switcher.incoming or switcher.current) if switcher else None
        look = None
        if latest is None or latest.config != effective or latest.preset != preset:
            if latest is not None and latest.config == effective:
                look = Look(preset, effective, latest.engine, latest.processor)  # same look, new name
                switcher.rename(look)
            else:
                self.building = True
                try:
                    look = self._build(preset, effective, switcher.last_input)
                finally:
                    self.building = False
                if self._stop.is_set():  # shutting down: this look will never be shown
                    close = getattr(look.processor, "close", None)
                    if close is not None:
                        close()
                    return None
                switcher.switch_to(look, config.playlist.crossfade)
                self._on_switch(look)
            log.info("preset %s (strength %g, model %s): %s", preset, strength, effective.model.name,
                     "crossfading" if look is not None and config.playlist.crossfade > 0 else "switched")
        if config is not self.config and config.playlist != self.config.playlist:
            self.playlist = Playlist(config.playlist)
        if preset != self.preset:
            self.playlist.switched()
        self.config, self.preset, self.strength = config, preset, strength
        self.last_error = None
        return look
