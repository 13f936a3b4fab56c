"""`streamdream serve`: the installation daemon.

What runs, top to bottom (the threads and queues are drawn in docs/architecture.md):
1. The config is loaded and checked (a control API open to the network without a token
   refuses to start); the HTTP server binds (/metrics, /healthz, /api/*).
2. ``app.assemble`` builds the parts: a ``ReconnectingSource`` (never ends; idle frames
   while the input is down), the first look (built by the ``Director`` and warmed up at
   the real frame size: a model that cannot dream at this size fails the start), and the
   pipeline: capture -> dream (the ``LookSwitch``: current look, crossfades) -> one worker
   per output, each retried alone.
3. This thread loops every ``POLL``: reload on SIGHUP (``request_reload``) or when the file
   changed, and the watchdog: a connected source that gives no frame for
   ``health.stall_after`` is reopened; a pipeline that writes no frame for
   ``health.stuck_after`` (or whose worker failed) is rebuilt. A reload can never end
   the daemon: any failure is a rejected change, logged and shown in /api/state.
4. ``stop`` (the CLI sets it on SIGTERM/SIGINT) ends it all; outputs are finalized, and
   every thread is joined by the one owner (``runtime/workers.py``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, TypeVar

from .. import __version__
from ..app import Assembly, assemble
from ..audio import AudioReact
from ..config import Config, SourceConfig, load_config
from ..errors import ConfigError, ControlError
from ..log import redact_url
from ..pipeline.runner import Pipeline
from ..runtime.interrupts import signalled, stop_watched
from ..runtime.observer import ObserverGroup
from ..runtime.workers import JOIN_TIMEOUT, POLL, Backoff, StopToken, Workers
from ..sinks import webrtc
from ..sources import comes_back, open_source, parse_uri
from ..web.binding import check_control_binding
from .director import Director, LookBuilder, describe_failure
from .health import HealthMonitor
from .http import ServiceServer
from .idle import IdleAnimator
from .metrics import PrometheusObserver
from .osc import OscServer
from .recent import RecentErrors
from .reconnect import ReconnectingSource
from .reload import ConfigWatcher, ReloadRequests, check_complete, plan_reload

log = logging.getLogger(__name__)

T = TypeVar("T")

_reload = ReloadRequests()
REBUILD_JOIN = 5.0  # seconds a stuck pipeline's threads get to end before the new one starts


def request_reload() -> None:
    """Ask the running daemon to reload its config file (the CLI's SIGHUP handler calls this)."""
    _reload.request()


def serve(config_path: str, stop: StopToken) -> int:
    """Run the daemon on ``config_path`` until ``stop`` is set; 0 after a clean stop.

    Raises StreamdreamError (ConfigError, ModelError, SourceError, ...) for what prevents
    a start; the CLI prints it and exits with its code.
    """
    config = load_config(config_path)
    return Service(config_path, config, stop).run()


def _retries_at_start(config: Config) -> bool:
    """Network streams and cameras may come later, and so may a file where the config asks for
    `reconnect` (a recording another program is about to write); any other file that does not
    open now never will."""
    uri = config.source.uri
    return comes_back(uri) or (parse_uri(uri).kind == "file" and "reconnect" in config.model_fields_set)


class Service:
    """The daemon's parts and the loop that reloads and watches; also the control API's backend."""

    def __init__(self, path: str | Path, config: Config, stop: StopToken, *, build=None) -> None:
        self.path = Path(path)
        self.config = config
        self.stop = stop
        self.workers = Workers(stop)  # the one owner of every thread the daemon starts
        self.metrics = PrometheusObserver(model=config.model.name)
        self.health = HealthMonitor(config.health)
        self.observer = ObserverGroup(self.metrics, self.health)
        self._build = build or LookBuilder(self.observer)
        self.watcher = ConfigWatcher(self.path)
        self.last_reload: dict[str, Any] = {"ok": None, "at": None, "error": None, "applied": None}  # replaced whole
        self.director: Director | None = None
        self.source: ReconnectingSource | None = None
        self.assembly: Assembly | None = None
        self.server: ServiceServer | None = None
        self.pipeline: Pipeline | None = None
        self.osc: OscServer | None = None  # when osc.port is set
        self.audio: AudioReact | None = None  # when audio_react is set
        self.midi: Any = None  # MidiInput, when midi.port is set (the optional extra)
        self.recent = RecentErrors()
        self._started_at = time.monotonic()
        self._reopened_at = 0.0
        self._rebuild = Backoff(config.reconnect.initial, config.reconnect.max)
        self._next_rebuild = 0.0
        self._frames_before = (0, 0)  # frames in and out of pipelines the watchdog replaced

    # --- start and stop -----------------------------------------------------------------------

    def run(self) -> int:
        config = self.config
        # binds now: a port in use or a control API open to the network fails before anything slow
        self.server = ServiceServer(config.metrics, metrics=self.metrics, health=self.health, controller=self, control=config.control)
        package_log = logging.getLogger("streamdream")
        package_log.addHandler(self.recent)
        try:
            self.server.start(self.workers)  # on the process's HTTP event-loop thread (web/server.py)
            if config.osc.port is not None:
                self.osc = OscServer(config.osc, self, self.metrics.registry)  # binds now: a taken port fails the start
            if config.midi.port is not None:
                self.midi = _midi_input(config, self)  # a port that is not there now is retried, never fatal
            if config.audio_react is not None:
                self.audio = AudioReact(config.audio_react, live=True, observer=self.observer)
            self.source = ReconnectingSource(
                self._source_factory(config.source), display=redact_url(config.source.uri), reconnect=config.reconnect,
                idle=IdleAnimator(config.idle, feedback=self._last_output), observer=self.observer,
                retry_first_open=_retries_at_start(config), size=(config.source.width, config.source.height),
                fps=config.source.fps, workers=self.workers,
            )  # fmt: skip
            self.director = Director(config, build=self._build, on_switch=self._switched)
            self.assembly = assemble(
                config, self.workers, daemon=True, observer=self.observer, first_look=self.director.first_look, source=self.source
            )
            self.director.start(self.assembly.looks, self.workers)
            self.assembly.looks.modulation = self._modulation()
            if self.audio is not None and config.audio_react is not None and config.audio_react.blend is not None:
                self.assembly.looks.blend_modulation = self.audio.blend
            self._start_pipeline()
            if self.osc is not None:
                self.workers.start(self.osc)
            if self.midi is not None:
                self.workers.start(self.midi)
            log.info(
                "streamdream %s serving %s -> %s; preset %s",
                __version__, self.source.display, ", ".join(redact_url(o.uri) for o in config.outputs),
                self.director.state_now.preset,
            )  # fmt: skip
            self._loop()
        finally:
            self.stop.set()
            if self.pipeline is not None:
                self.pipeline.finish()
            if self.source is not None:
                self.source.close()
            if self.assembly is not None and self.assembly.looks.blends is not None:
                self.assembly.looks.blends.close()
            self.server.shutdown()
            if self.osc is not None and not self.osc.alive:
                self.osc.end()  # never started: close its socket here
            if self.midi is not None and not self.midi.alive:
                self.midi.end()
            self.workers.join(1.0 if signalled() else JOIN_TIMEOUT)  # ending: files are finalized, a dream step is not waited for
            package_log.removeHandler(self.recent)
        return 0

    def _source_factory(self, config: SourceConfig):
        taps: list[Any] = [self.audio.tap] if self.audio is not None else []  # each has audio() and video()
        if webrtc.configured(self.config.outputs):  # the webrtc: output carries the source's sound
            taps.append(webrtc.hub().feed)
        audio = taps[0] if len(taps) == 1 else (_Taps(taps) if taps else None)
        return lambda: open_source(config, workers=self.workers, audio=audio)

    def _start_pipeline(self) -> None:
        assert self.assembly is not None
        self.pipeline = self.assembly.pipeline()
        self.pipeline.start()
        self._started_at = time.monotonic()

    def _modulation(self):
        """The dream's strength factor per frame: the audio-reactive one times the MIDI clock's pulse."""
        audio = self.audio.strength if self.audio is not None else None
        pulse = self.midi.pulse if self.midi is not None else None
        if pulse is None:
            return audio
        if audio is None:
            return lambda frame: pulse.factor()
        return lambda frame: audio(frame) * pulse.factor()

    def _last_output(self):
        assembly = self.assembly
        return assembly.looks.last_output if assembly is not None else None

    def _loop(self) -> None:
        with stop_watched():
            while not self.stop.is_set():
                if _reload.take() or self.watcher.changed():
                    self.reload()
                self.watch()
                self.stop.wait(POLL)

    def _switched(self, look) -> None:
        self.metrics.set_model(look.config.model.name)
        self.metrics.preset_switch()

    # --- the watchdog -------------------------------------------------------------------------

    def watch(self) -> None:
        """Reopen a stalled source; rebuild a pipeline that writes nothing or whose worker failed."""
        now, health = time.monotonic(), self.config.health
        source = self.source
        assert source is not None, "the watchdog runs once run() built the source"
        stalled = source.stalled_for()
        if stalled is not None and stalled > health.stall_after and now - self._reopened_at > health.stall_after:
            self._reopened_at = now
            self.metrics.watchdog("reopen_source")
            source.reopen(f"no frame for {stalled:.1f} s (health.stall_after: {health.stall_after:g} s)")
        pipeline = self.pipeline
        if pipeline is None or now < self._next_rebuild:
            return
        age = self.health.status().last_output_age
        silent = min(age, now - self._started_at) if age is not None else now - self._started_at
        if pipeline.alive and silent <= health.stuck_after:
            if silent < 1.0:
                self._rebuild.reset()
            return
        error = pipeline.result.error
        why = f"failed: {describe_failure(error)}" if error is not None else (
            f"wrote no frame for {silent:.0f} s (health.stuck_after: {health.stuck_after:g} s)")
        log.error("the pipeline %s; rebuilding it", why)
        self.metrics.watchdog("rebuild_pipeline")
        pipeline.stop()
        result = pipeline.finish(join_timeout=REBUILD_JOIN)
        self._frames_before = (self._frames_before[0] + result.frames_in, self._frames_before[1] + result.frames_out)
        self._next_rebuild = now + self._rebuild.next_delay()
        self._start_pipeline()

    # --- reload -------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Apply the config file as it is now; on any problem keep the running config. True if applied."""
        self.watcher.mark_current()
        try:
            new = load_config(self.path, complete=True)
            check_complete(self.config, new, self.path)
            plan = plan_reload(self.config, new)
            if plan.empty:  # still a success: a rejected reload before it is no longer the last word
                self._reload_done(True, None, "nothing (no change)")
                return True
            check_control_binding(self.config.metrics.host, new.control)
            if plan.source:
                self._source_factory(new.source)()  # parse the new URI before anything changes
                retry_display = redact_url(new.source.uri)
            if plan.outputs:
                self._running(self.pipeline).outputs.check_all(new.outputs)  # parse only; files and connections open in update()
            if plan.look and not self._wait(self._running(self.director).reconfigure(new)):
                return False  # stopping
        except Exception as exc:  # whatever it is (a RecursionError, a cv2.error...), the daemon goes on
            self._reload_done(False, describe_failure(exc))
            return False
        if plan.outputs:
            try:
                self._running(self.pipeline).outputs.update(new.outputs)
            except Exception as exc:
                log.error("config reload: outputs not changed: %s", describe_failure(exc))
                new = new.model_copy(update={"outputs": self.config.outputs})
        source = self._running(self.source)
        if plan.source:
            source.replace(self._source_factory(new.source), retry_display)
            self.health.source_replaced()
            old_shape = (self.config.source.width, self.config.source.height, self.config.source.fps)
            if (new.source.width, new.source.height, new.source.fps) != old_shape:
                info = self._running(source.info)
                log.warning("config reload: the outputs keep %dx%d at %s fps until a restart; the new input is scaled",
                            info.width, info.height, info.fps)
        self.health.configure(new.health)
        source.reconnect = new.reconnect
        source.idle.configure(new.idle)
        self._running(self.server).set_control(new.control)
        if plan.needs_restart:
            log.warning("config reload: %s changed; restart streamdream to apply (running with the old values)",
                        ", ".join(plan.needs_restart))
            new = new.model_copy(update={name: getattr(self.config, name) for name in plan.needs_restart})
        self.config = new
        self._running(self.assembly).config = new  # a rebuilt pipeline starts from the running config
        self._reload_done(True, None, plan.describe())
        return True

    def _wait(self, future) -> bool:
        director = self._running(self.director)
        while not future.done():
            if self.stop.wait(POLL):
                return False
            if not director.alive:  # it failed (logged): nobody will answer
                raise RuntimeError(f"the look builder stopped: {director.error!r}")
        future.result()  # raises what the build raised
        return True

    @staticmethod
    def _running(part: T | None) -> T:
        """A part that run() builds (source, pipeline, director, server, assembly): set from
        the start on, which is before the loop, the watchdog or a control verb can reach it."""
        assert part is not None, "called before the daemon started"
        return part

    def _reload_done(self, ok: bool, error: str | None, applied: str = "") -> None:
        self.metrics.config_reload(ok)
        self.last_reload = {"ok": ok, "at": time.time(), "error": error, "applied": applied if ok else None}
        if ok:
            log.info("config reloaded from %s: applied %s", self.path, applied)
        else:
            log.error("config reload rejected, still running the previous config: %s", error)

    # --- control API backend ------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        pipeline = self.pipeline
        if pipeline is None:
            return {"version": __version__, "starting": True}
        state = self._running(self.director).state()
        source = self._running(self.source)
        result = pipeline.result
        now = time.monotonic()
        state.update({
            "version": __version__,
            "source": {"uri": source.display, "up": source.up, "reconnects": source.reconnects},
            "outputs": [o.as_dict(now) for o in result.outputs],
            "frames": {"in": self._frames_before[0] + result.frames_in, "out": self._frames_before[1] + result.frames_out},
            "config": {"path": str(self.path), "last_reload": self.last_reload},
            "errors": self.recent.entries(),
        })  # fmt: skip
        blends = self.assembly.looks.blends.states() if self.assembly and self.assembly.looks.blends else []
        if blends:
            state["blend_source"] = blends[-1]  # the one used last: the look shown (or fading in)
            state["blend_sources"] = blends
        if self.audio is not None:
            state["audio_react"] = self.audio.state()
        if self.midi is not None:
            state["midi"] = self.midi.state()
        return state

    def midi_learn(self, control: Any, layer: Any = None, preset: Any = None) -> dict[str, Any]:
        """Learn mode: bind the next MIDI control change or note to ``control`` (None: stop learning)."""
        if self.midi is None:
            raise ControlError("MIDI is off: set midi.port in the config (`streamdream midi-ports` lists the ports)")
        names = self._running_director().state()["presets"]
        if control == "preset" and preset not in names:
            raise ControlError(f"learn preset: unknown preset {str(preset)[:64]!r}; choose one of {', '.join(names)}")
        return self.midi.learn(control, layer, preset)

    def picture(self):
        """The latest output picture (read-only), for the control page; None before the first."""
        return self._last_output()

    def _running_director(self) -> Director:
        if self.pipeline is None or self.director is None:
            raise ControlError("still starting (loading the model); try again in a moment")
        return self.director

    def next_preset(self) -> dict[str, Any]:
        return self._running_director().next_preset()

    def prepare_next(self, after: str | None = None) -> None:
        """Build the next preset's look ahead of its switch (the MIDI clock's next bar)."""
        self._running_director().prepare_next(after)

    def previous_preset(self) -> dict[str, Any]:
        return self._running_director().previous_preset()

    def set_preset(self, name: str) -> dict[str, Any]:
        return self._running_director().set_preset(name)

    def set_strength(self, value: float) -> dict[str, Any]:
        return self._running_director().set_strength(value)

    def set_step_size(self, value: float) -> dict[str, Any]:
        return self._running_director().set_step_size(value)

    def set_carry(self, value: float) -> dict[str, Any]:
        return self._running_director().set_carry(value)

    def set_crossfade(self, value: float) -> dict[str, Any]:
        return self._running_director().set_crossfade(value)

    def set_layer_weight(self, layer: str, value: float) -> dict[str, Any]:
        return self._running_director().set_layer_weight(layer, value)

    def set_blend(self, value: float) -> dict[str, Any]:
        return self._running_director().set_blend(value)


class _Taps:
    """The source's sound heard by several: the audio-reactive analysis and the webrtc: output."""

    def __init__(self, taps: list[Any]) -> None:
        self.taps = taps

    def video(self, stream_seconds: float | None, arrival: float) -> None:
        for tap in self.taps:
            tap.video(stream_seconds, arrival)

    def audio(self, frame: Any) -> None:
        for tap in self.taps:
            tap.audio(frame)


def _midi_input(config: Config, controller: Service):
    try:
        from .midi import MidiInput  # noqa: PLC0415 - mido is the midi extra: imported only when midi.port is set
    except ImportError as exc:
        raise ConfigError(f"midi.port is set, but MIDI needs {exc.name or 'mido'}: pip install 'streamdream[midi]'") from None
    return MidiInput(config.midi, controller, controller.metrics.registry, config_path=controller.path, reconnect=config.reconnect)


__all__ = ["serve", "request_reload", "Service"]
