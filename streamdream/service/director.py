"""Which look runs: presets, strength, the playlist and reloads, built off the dream's path.

One worker (``director``) owns the preset, the strength, the config and the playlist: every
change (a control request, a reloaded config) becomes a request on its queue, and it looks
at the playlist itself between requests. It merges what is queued (only the latest preset
and strength count), builds the new look and warms it up at the real frame size on the
latest input frame (the first gradient steps trace the graph: seconds on a CPU), and only
then hands it to the ``LookSwitch``, which crossfades. The output never waits for a model.
A look can also be built ahead (``prepare_next``: the MIDI clock's next preset, due on the
next bar), so the switch itself only hands it over.

Any exception while building a look (model, preset, layers, guide image, warm-up) is a
rejected change: the reason is logged and published (``state()["last_error"]``, and a
reload's future fails with it), and the running look goes on. What other threads read is
``DirectorState``, a frozen record the worker replaces after each change.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..app import load_checked_student
from ..backend import prepare
from ..config import Config, ModelConfig
from ..errors import ControlError, ModelError, StreamdreamError
from ..frames import Frame, SourceInfo, freeze
from ..log import redact_url
from ..models.loader import load_dream_model
from ..pipeline.looks import Look, LookSwitch, build_look
from ..redact import redact
from ..runtime.observer import PipelineObserver
from ..runtime.queues import FrameQueue, QueuePolicy
from ..runtime.workers import POLL, Worker, Workers
from ..sources.blend import only_blend_differs, unblended
from .playlist import DEFAULT_PRESET, Playlist, apply_preset, next_in, preset_names, previous_in
from .tweaks import Tweaks, apply_tweaks, check_tweak

log = logging.getLogger(__name__)

MAX_STRENGTH = 10.0
MODEL_CACHE = 3  # models kept loaded for quick switches back
ENGINE_CACHE = 6  # dream engines (one traced graph each) kept for presets the playlist returns to
REQUESTS = 64  # control requests waiting at most; more are refused as busy
MAX_REASON = 400  # characters of an exception's text kept (OpenCV's run to pages)


def describe_failure(exc: BaseException) -> str:
    """A look's build failure in one line: what, and why."""
    if isinstance(exc, StreamdreamError):
        return str(exc)
    text = " ".join(redact(str(exc)).split()) or "no details"  # redacted while a quoted line is still a line
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 3] + "..."
    return f"{type(exc).__name__}: {text}"


class LookBuilder:
    """Builds a look for a config. Engines are kept for the last few settings, so a playlist
    going round its presets reuses them: no new graph, no retrace, flat memory."""

    def __init__(self, observer: PipelineObserver | None = None) -> None:
        self.observer = observer or PipelineObserver()
        self._models: OrderedDict[ModelConfig, Any] = OrderedDict()
        self._engines: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._steps: OrderedDict[tuple[Any, ...], Any] = OrderedDict()  # compiled steps, by step_key
        self._student_networks: OrderedDict[str, Any] = OrderedDict()  # by the student file's sha256

    def model(self, config: ModelConfig) -> Any:
        return _cached(self._models, config, lambda: load_dream_model(config), MODEL_CACHE)

    def engine(self, config: Config) -> Any:
        prepare(config.engine)  # the first build picks the backend; a reload asking for another is refused
        from ..dream.engine import DreamEngine  # noqa: PLC0415 - loads Keras and its backend

        if config.dream.engine == "student":
            return _cached(self._engines, (config.model, config.dream, config.engine), lambda: self._student(config),
                           ENGINE_CACHE)

        def build() -> Any:
            # a new strength (an OSC fader, the API) reuses the step traced for the old one
            key = self._step_key(config)
            engine = DreamEngine(self.model(config.model), config.dream, config.engine, step=self._steps.get(key))
            _cached(self._steps, key, lambda: engine.step, ENGINE_CACHE)
            return engine

        return _cached(self._engines, self._engine_key(config), build, ENGINE_CACHE)

    @staticmethod
    def _engine_key(config: Config) -> tuple[Any, ...]:
        # the blend happens before the dream: looks that differ only in their second input share an engine
        return (config.model, unblended(config.dream), config.engine)

    def _student(self, config: Config) -> Any:
        """A student engine; engines of one student file (other strengths, tones) share its network."""
        from ..dream.student import StudentEngine  # noqa: PLC0415 - loads Keras and its backend

        student = load_checked_student(config)
        network = self._student_networks.get(student.sha256)
        engine = StudentEngine(student, config.dream, config.model, config.engine, network=network)
        _cached(self._student_networks, student.sha256, lambda: engine.network, MODEL_CACHE)
        return engine

    @staticmethod
    def _step_key(config: Config) -> tuple[Any, ...]:
        from ..dream.engine import step_key  # noqa: PLC0415 - loads Keras and its backend

        return (config.model, step_key(config.dream), config.engine)

    def __call__(self, preset: str, config: Config, warm_on: Frame) -> Look:
        """A live look, warmed up on ``warm_on`` (a real frame: its dream is ready to show;
        an ``IdleFrame`` made up at start: only traced and checked)."""
        try:
            engine = self.engine(config)
            return build_look(preset, config, engine, live=True, observer=self.observer, warm_on=warm_on, shown=warm_on.index >= 0)
        except BaseException:
            # a look that failed must not leave a broken engine, or its step, cached
            self._engines.pop(self._engine_key(config), None)
            self._steps.pop(self._step_key(config), None)
            raise


def warm_frame(info: SourceInfo) -> Frame:
    """A grey frame at the source's size: the first look is checked at the real size."""
    return Frame(freeze(np.full((info.height, info.width, 3), 128, np.uint8)), index=-1, pts=None)


def _crossfade(config: Config, tweaks: Tweaks) -> float:
    """Seconds a switch blends: the control API's crossfade, else ``playlist.crossfade``."""
    return dict(tweaks).get("crossfade", config.playlist.crossfade)


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
    tweaks: Tweaks = ()  # ("step_size" | "carry" | "layer:NAME", value), ...
    prepare: str | None = None  # a preset whose look to build ahead, not to switch to
    reason: str = ""
    future: Future | None = None


@dataclass(frozen=True)
class DirectorState:
    """What the HTTP threads and the daemon read; the director worker replaces it whole."""

    config: Config
    preset: str
    strength: float
    order: tuple[str, ...]
    next_switch_at: float | None  # monotonic
    building: bool = False
    last_error: str | None = None
    tweaks: Tweaks = ()  # the control API's step size, carry and layer weights, over the config


Build = Callable[[str, Config, Frame], Look]


class Director(Worker):
    """Owns the current preset, strength and playlist; implements the control API's verbs."""

    def __init__(self, config: Config, *, build: Build, on_switch: Callable[[Look], None] | None = None) -> None:
        super().__init__("director")
        self._build = build
        self._on_switch = on_switch or (lambda look: None)
        self._playlist = Playlist(config.playlist)  # this worker's alone
        self._requests: FrameQueue[_Request] = FrameQueue("requests", REQUESTS, QueuePolicy.WAIT)
        # the latest strength and tweaks asked for and not yet taken up (any thread writes, this
        # worker takes them): a fader's 100 values a second coalesce into the next build, and
        # never wait on the queue behind a build
        self._controls: dict[str, float] = {}
        self._controls_lock = threading.Lock()
        self.switch: LookSwitch | None = None
        self._prepared: Look | None = None  # built ahead by prepare_next; this worker's alone
        self._info = SourceInfo(uri="", width=640, height=360, fps=None, live=True)  # until first_look
        self.state_now = self._publish(config, self._playlist.initial(), 1.0)

    # --- life cycle -------------------------------------------------------------------------

    def first_look(self, config: Config, info: SourceInfo) -> Look:
        """Build the look to start with (here, so a bad model fails the start), at the real size."""
        state = self.state_now
        self._info = info
        try:
            return self._build(state.preset, self._effective(config, state.preset, state.strength, state.tweaks), warm_frame(info))
        except StreamdreamError:
            raise
        except Exception as exc:  # e.g. layers that shrink below 1 px at this frame size
            raise ModelError(f"cannot build the look (preset {state.preset}): {describe_failure(exc)}") from exc

    def start(self, switch: LookSwitch, workers: Workers) -> None:
        self.switch = switch
        self._on_switch(switch.current)
        workers.start(self)

    # --- requests (any thread) --------------------------------------------------------------

    def _effective(self, config: Config, preset: str, strength: float, tweaks: Tweaks = ()) -> Config:
        return apply_tweaks(config, tweaks, lambda base: apply_preset(base, base.playlist.presets.get(preset), strength))

    def _submit(self, **fields: Any) -> Future:
        future: Future = Future()
        if not self._requests.put(_Request(future=future, **fields), timeout=1.0):
            raise ControlError("too many changes waiting; try again in a moment")
        return future

    def reconfigure(self, config: Config) -> Future:
        """Apply a reloaded config; the future fails (and nothing changes) if it cannot be built."""
        return self._submit(config=config, reason="reload")

    def next_preset(self) -> dict[str, Any]:
        state = self.state_now
        if not state.config.playlist.presets:
            raise ControlError("no presets defined: add playlist.presets to the config")
        return self.set_preset(next_in(state.order, state.preset))

    def prepare_next(self, after: str | None = None) -> None:
        """Build the look of the preset after ``after`` (default: the current one) ahead of its switch."""
        state = self.state_now
        if state.config.playlist.presets:
            self._submit(prepare=next_in(state.order, after or state.preset), reason="prepare")

    def previous_preset(self) -> dict[str, Any]:
        state = self.state_now
        if not state.config.playlist.presets:
            raise ControlError("no presets defined: add playlist.presets to the config")
        return self.set_preset(previous_in(state.order, state.preset))

    def set_preset(self, name: str) -> dict[str, Any]:
        config = self.state_now.config
        names = preset_names(config.playlist)
        if name not in names:
            raise ControlError(f"unknown preset {name[:64]!r}; choose one of {', '.join(names)}")
        self._submit(preset=name, reason="control")
        return {"preset": name, "status": "switching", "crossfade": _crossfade(config, self.state_now.tweaks)}

    def set_strength(self, value: float) -> dict[str, Any]:
        if not 0.0 < value <= MAX_STRENGTH:
            raise ControlError(f"strength must be > 0 and <= {MAX_STRENGTH:g}, got {value:g}")
        self._control("strength", value)
        return {"strength": value, "status": "switching"}

    def set_step_size(self, value: float) -> dict[str, Any]:
        return self._tweak("step_size", value)

    def set_carry(self, value: float) -> dict[str, Any]:
        return self._tweak("carry", value)

    def set_crossfade(self, value: float) -> dict[str, Any]:
        return self._tweak("crossfade", value)

    def set_blend(self, value: float) -> dict[str, Any]:
        return self._tweak("blend", value)

    def set_layer_weight(self, layer: str, value: float) -> dict[str, Any]:
        return self._tweak(f"layer:{layer}", value)

    def _tweak(self, key: str, value: float) -> dict[str, Any]:
        state = self.state_now
        effective = self._effective(state.config, state.preset, state.strength, state.tweaks)
        check_tweak(effective, key, value)  # ControlError naming the bound or the layers there are
        self._control(key, value)
        return {key.replace("layer:", "layer "): value, "status": "switching"}

    def _control(self, key: str, value: float) -> None:
        """Note the latest ``value`` for ``key`` ("strength", "step_size", "layer:NAME"...); the
        worker takes it up with its next batch, woken by one request if none is waiting."""
        with self._controls_lock:
            waiting = bool(self._controls)
            self._controls[key] = value
        if not waiting:
            self._requests.put(_Request(reason="control"), timeout=0.0)  # full: it polls anyway

    def _take_controls(self) -> dict[str, float]:
        with self._controls_lock:
            controls, self._controls = self._controls, {}
        return controls

    def state(self) -> dict[str, Any]:
        state = self.state_now
        config = state.config
        showing = self.switch.showing if self.switch else None
        current = showing.current if showing else None
        incoming = showing.incoming if showing else None
        target = incoming or current
        effective = target.config if target else self._effective(config, state.preset, state.strength, state.tweaks)
        next_in_s = None if state.next_switch_at is None else max(0.0, state.next_switch_at - time.monotonic())
        return {
            "preset": state.preset,
            "showing": current.preset if current else None,
            "fading_to": incoming.preset if incoming else None,
            "building": state.building,
            "presets": list(preset_names(config.playlist)),
            "cycle": list(state.order) if config.playlist.presets else [],
            "strength": state.strength,
            "model": effective.model.name,
            "layers": [spec.name for spec in effective.model.layers or ()] or None,
            "layer_weights": {spec.name: spec.weight for spec in effective.model.layers or ()},
            "carry": effective.coherence.carry,
            "blend": effective.dream.blend,
            "blend_with": redact_url(effective.dream.blend_with) if effective.dream.blend_with else None,
            "blend_mode": effective.dream.blend_mode,
            "tweaks": dict(state.tweaks),
            "layer_preset": effective.model.preset,
            "dream": {"strength": effective.dream.strength, "steps": effective.dream.steps, "octaves": effective.dream.octaves, "step_size": effective.dream.step_size},
            "coherence": effective.coherence.mode,
            "playlist": {
                "interval": config.playlist.interval,
                "crossfade": _crossfade(config, state.tweaks),
                "next_switch_in": next_in_s,
                "schedule": [{"at": e.at, "preset": e.preset} for e in config.playlist.schedule],
            },
            "last_error": state.last_error,
        }

    # --- the worker -------------------------------------------------------------------------

    def step(self) -> bool:
        batch: list[_Request] = []
        try:
            batch.append(self._requests.get(timeout=POLL))
            batch += self._requests.drain()
        except TimeoutError:
            pass
        state = self.state_now
        due = self._playlist.due(state.preset)
        if due is not None and due != state.preset:
            log.info("playlist: switching to preset %s", due)
            self._playlist.switched()  # do not ask again while this one builds
            batch.insert(0, _Request(preset=due, reason="playlist"))
        controls = self._take_controls()
        if controls:
            batch.append(_Request(strength=controls.pop("strength", None), tweaks=tuple(controls.items()), reason="control"))
        if batch:
            self._handle(batch)
        return True

    def _handle(self, batch: list[_Request]) -> None:
        futures = [r.future for r in batch if r.future is not None]
        try:
            look = self._apply(batch)
        except Exception as exc:  # a rejected change: reported to whoever asked, logged; the old look stays
            reason = describe_failure(exc)
            self.state_now = replace(self.state_now, building=False, last_error=reason)
            for future in futures:
                future.set_exception(exc)
            if not any(r.config is not None for r in batch):
                log.error("switch failed, keeping preset %s: %s", self.state_now.preset, reason)
            return
        for future in futures:
            future.set_result(look)

    def _apply(self, batch: list[_Request]) -> Look | None:
        state = self.state_now
        config, preset, strength, tweaks = state.config, state.preset, state.strength, dict(state.tweaks)
        for request in batch:  # later requests win
            config = request.config or config
            preset = request.preset or preset
            strength = request.strength or strength
            tweaks.update(request.tweaks)
        if preset not in preset_names(config.playlist):  # a reload removed it
            preset = Playlist(config.playlist).initial() if config.playlist.presets else DEFAULT_PRESET
        own = config.playlist.presets.get(preset)
        if preset != state.preset and own is not None and own.blend is not None and not any("blend" in dict(r.tweaks) for r in batch):
            tweaks.pop("blend", None)  # a preset with its own blend share takes the blend control back
        effective = self._effective(config, preset, strength, tuple(tweaks.items()))
        switch = self.switch
        assert switch is not None
        latest = switch.incoming or switch.current
        look = None
        if latest.config != effective or latest.preset != preset:
            if latest.config == effective or only_blend_differs(latest.config, effective):
                # the same look under a new name, or with a new blend share, mode or fit: taken up at once
                look = Look(preset, effective, latest.engine, latest.processor, latest.live)
                switch.rename(look)
            else:
                self.state_now = replace(state, building=True)
                look = self._take_prepared(preset, effective) or self._build(preset, effective, switch.last_input or warm_frame(self._info))
                if self.stop.is_set():  # shutting down: this look will never be shown
                    return None
                switch.switch_to(look, _crossfade(config, tuple(tweaks.items())))
                self._on_switch(look)
            log.info("preset %s (strength %g, model %s): %s", preset, strength, effective.model.name,
                     "crossfading" if _crossfade(config, tuple(tweaks.items())) > 0 else "switched")  # fmt: skip
        if config.playlist != state.config.playlist:
            self._playlist = Playlist(config.playlist)
        if preset != state.preset:
            self._playlist.switched()
        self.state_now = self._publish(config, preset, strength, tuple(tweaks.items()))
        ahead = next((r.prepare for r in reversed(batch) if r.prepare), None)
        if ahead is not None and ahead in preset_names(config.playlist):
            self._prepare(ahead, self._effective(config, ahead, strength, tuple(tweaks.items())))
        return look

    def _prepare(self, preset: str, effective: Config) -> None:
        """Build ``preset``'s look now and hold it for the switch; a failure only means it is built then."""
        switch = self.switch
        assert switch is not None
        held, latest = self._prepared, switch.incoming or switch.current
        if latest.config == effective or (held is not None and held.preset == preset and held.config == effective):
            return
        try:
            look = self._build(preset, effective, switch.last_input or warm_frame(self._info))
        except Exception as exc:
            log.warning("building preset %s ahead failed (it is built again at its switch): %s", preset, describe_failure(exc))
            return
        self._drop_prepared()
        self._prepared = look

    def _take_prepared(self, preset: str, effective: Config) -> Look | None:
        """The look built ahead, if it is this one; one that is not (a knob moved since) is dropped."""
        held = self._prepared
        if held is not None and held.preset == preset and held.config == effective:
            self._prepared = None
            return held
        if held is not None and held.preset == preset:
            self._drop_prepared()
        return None

    def _drop_prepared(self) -> None:
        held, self._prepared = self._prepared, None
        if held is not None:
            close = getattr(held.processor, "close", None)
            if close is not None:
                close()

    def _publish(self, config: Config, preset: str, strength: float, tweaks: Tweaks = ()) -> DirectorState:
        to_next = self._playlist.seconds_to_next()
        return DirectorState(
            config, preset, strength, self._playlist.order, None if to_next is None else time.monotonic() + to_next,
            tweaks=tweaks,
        )


__all__ = ["Director", "DirectorState", "LookBuilder", "describe_failure", "warm_frame"]
