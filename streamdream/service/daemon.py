"""`streamdream serve`: the installation daemon.

What runs, top to bottom:
1. The config is loaded and checked (a control API open to the network without a token
   refuses to start); the first look (model, engine, processor) is built.
2. The pipeline runs in its own thread: a ``ReconnectingSource`` (never ends; idle frames
   while the input is down) -> the ``SwitchableProcessor`` (current look, crossfades) ->
   a ``SinkSet`` (outputs that a reload can change one by one).
3. One HTTP server answers /metrics, /healthz and /api/*.
4. This thread loops about twice a second: reload on SIGHUP (``request_reload``) or when
   the file changed, and start playlist switches that are due.
5. ``stop`` (the CLI sets it on SIGTERM/SIGINT) ends it all; outputs are finalized.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Config, SourceConfig, load_config
from ..errors import ControlError, StreamdreamError
from ..log import redact_url
from ..pipeline.observer import ObserverGroup
from ..pipeline.runner import Pipeline, PipelineResult
from .director import Director, LookBuilder
from .health import HealthMonitor
from .http import ServiceServer, check_control_binding
from .idle import IdleAnimator
from .metrics import PrometheusObserver
from .outputs import SinkSet
from .reconnect import ReconnectingSource
from .reload import ConfigWatcher, ReloadRequests, plan_reload

log = logging.getLogger(__name__)

TICK = 0.5
_reload = ReloadRequests()


def request_reload() -> None:
    """Ask the running daemon to reload its config file (the CLI's SIGHUP handler calls this)."""
    _reload.request()


def serve(config_path: str, stop: threading.Event) -> int:
    """Run the daemon on ``config_path`` until ``stop`` is set; 0 after a clean stop.

    Raises StreamdreamError (ConfigError, ModelError, SourceError, ...) for what prevents
    a start or ends the pipeline; the CLI prints it and exits with its code.
    """
    config = load_config(config_path)
    return Service(config_path, config, stop).run()


def _source_factory(config: SourceConfig):
    from ..sources import open_source

    return lambda: open_source(config)


def _retries_at_start(config: SourceConfig) -> bool:
    """Network streams and cameras may come later; a file that does not open now never will."""
    from ..sources import parse_uri

    return parse_uri(config.uri).kind in ("network", "webcam")


class Service:
    """The daemon's parts and the loop that reloads and schedules; also the control API's backend."""

    def __init__(self, path: str | Path, config: Config, stop: threading.Event, *, build=None) -> None:
        self.path = Path(path)
        self.config = config
        self.stop = stop
        self.metrics = PrometheusObserver(model=config.model.name)
        self.health = HealthMonitor(config.health)
        self.observer = ObserverGroup(self.metrics, self.health)
        self._build = build or LookBuilder(self.observer)
        self.watcher = ConfigWatcher(self.path)
        self.last_reload: dict[str, Any] = {"ok": None, "at": None, "error": None}
        self.director: Director | None = None
        self.source: ReconnectingSource | None = None
        self.outputs: SinkSet | None = None
        self.server: ServiceServer | None = None
        self.pipeline: Pipeline | None = None
        self._pipeline_error: BaseException | None = None

    # --- start and stop -----------------------------------------------------------------------

    def run(self) -> int:
        config = self.config
        # binds now: a port in use or a control API open to the network fails before anything slow
        self.server = ServiceServer(config.metrics, metrics=self.metrics, health=self.health, controller=self, control=config.control)
        thread = threading.Thread(target=self._run_pipeline, name="pipeline", daemon=True)
        switcher = None
        try:
            self.server.start()
            idle = IdleAnimator(config.idle, feedback=self._last_output)
            self.source = ReconnectingSource(
                _source_factory(config.source),
                display=redact_url(config.source.uri),
                reconnect=config.reconnect,
                idle=idle,
                observer=self.observer,
                retry_first_open=_retries_at_start(config.source),
                size=(config.source.width, config.source.height),
                fps=config.source.fps,
            )
            self.outputs = SinkSet(config.outputs)  # parses every output URI now: a typo fails the start
            self.source.open()  # a file that is no video fails now, before the model loads
            self.director = Director(config, build=self._build, on_switch=self._switched)
            switcher = self.director.start()
            self.pipeline = Pipeline(
                self.source, lambda info: switcher, [self.outputs],
                queue_size=config.pipeline.queue_size, stop=self.stop, observer=self.observer,
            )  # fmt: skip
            log.info(
                "streamdream %s serving %s -> %s; preset %s",
                __version__, self.source.display, ", ".join(redact_url(o.uri) for o in config.outputs), self.director.preset,
            )  # fmt: skip
            thread.start()
            self._loop(thread)
        finally:
            self.stop.set()
            if thread.ident is not None:
                thread.join(timeout=60)
            else:  # the pipeline never ran, so it closed nothing
                if switcher is not None:
                    switcher.close()
                if self.source is not None:
                    self.source.close()
            if self.director is not None:
                self.director.stop()
            self.server.shutdown()
        return self._exit_code()

    def _last_output(self):
        director = self.director
        return director.switcher.last_output if director is not None and director.switcher is not None else None

    def _run_pipeline(self) -> None:
        try:
            self.pipeline.run()
        except BaseException as exc:  # handed to the main thread, which reports it
            self._pipeline_error = exc
        finally:
            self.stop.set()

    def _loop(self, pipeline: threading.Thread) -> None:
        while not self.stop.is_set() and pipeline.is_alive():
            if _reload.take() or self.watcher.changed():
                self.reload()
            self.director.tick()
            self.stop.wait(TICK)

    def _exit_code(self) -> int:
        error = self._pipeline_error or (self.pipeline.result.error if self.pipeline else None)
        if error is None:
            return 0
        if isinstance(error, StreamdreamError):
            raise error
        log.error("the pipeline failed: %r", error)
        return 1

    def _switched(self, look) -> None:
        self.metrics.set_model(look.config.model.name)
        self.metrics.preset_switch()

    # --- reload -------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Apply the config file as it is now; on any problem keep the running config. True if applied."""
        self.watcher.mark_current()
        try:
            new = load_config(self.path)
            plan = plan_reload(self.config, new)
            if plan.empty:
                log.info("config reload: nothing changed")
                return True
            check_control_binding(self.config.metrics.host, new.control)
            if plan.source:
                _source_factory(new.source)()  # parse the new URI before anything changes
                retry_display = redact_url(new.source.uri)
            if plan.outputs:
                from ..sinks import open_sink

                for output in new.outputs:
                    open_sink(output)  # parse only; files and connections open in update()
            if plan.look and not self._wait(self.director.reconfigure(new)):
                return False  # stopping
        except (StreamdreamError, OSError) as exc:
            self._reload_done(False, str(exc))
            return False
        if plan.outputs:
            try:
                self.outputs.update(new.outputs)
            except StreamdreamError as exc:
                log.error("config reload: outputs not changed: %s", exc)
                new = new.model_copy(update={"outputs": self.config.outputs})
        if plan.source:
            self.source.replace(_source_factory(new.source), retry_display)
            old_shape = (self.config.source.width, self.config.source.height, self.config.source.fps)
            if (new.source.width, new.source.height, new.source.fps) != old_shape:
                info = self.source.info
                log.warning("config reload: the outputs keep %dx%d at %s fps until a restart; the new input is scaled",
                            info.width, info.height, info.fps)
        self.health.configure(new.health)
        self.source.reconnect = new.reconnect
        self.source.idle.configure(new.idle)
        self.server.set_control(new.control)
        if plan.needs_restart:
            log.warning("config reload: %s changed; restart streamdream to apply (running with the old values)",
                        ", ".join(plan.needs_restart))
            new = new.model_copy(update={name: getattr(self.config, name) for name in plan.needs_restart})
        self.config = new
        self._reload_done(True, None, plan.describe())
        return True

    def _wait(self, future) -> bool:
        while not future.done():
            if self.stop.wait(0.25):
                return False
        future.result()  # raises what the build raised
        return True

    def _reload_done(self, ok: bool, error: str | None, applied: str = "") -> None:
        self.metrics.config_reload(ok)
        self.last_reload = {"ok": ok, "at": time.time(), "error": error}
        if ok:
            log.info("config reloaded from %s: applied %s", self.path, applied)
        else:
            log.error("config reload rejected, still running the previous config: %s", error)

    # --- control API backend ------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        if self.pipeline is None:
            return {"version": __version__, "starting": True}
        state = self.director.state()
        result: PipelineResult | None = self.pipeline.result if self.pipeline else None
        state.update({
            "version": __version__,
            "source": {"uri": self.source.display, "up": self.source.up, "reconnects": self.source.reconnects},
            "outputs": [redact_url(c.uri) for c in self.outputs.configs],
            "frames": {"in": result.frames_in if result else 0, "out": result.frames_out if result else 0},
            "config": {"path": str(self.path), "last_reload": self.last_reload},
        })  # fmt: skip
        return state

    def _running_director(self) -> Director:
        if self.pipeline is None:
            raise ControlError("still starting (loading the model); try again in a moment")
        return self.director

    def next_preset(self) -> dict[str, Any]:
        return self._running_director().next_preset()

    def set_preset(self, name: str) -> dict[str, Any]:
        return self._running_director().set_preset(name)

    def set_strength(self, value: float) -> dict[str, Any]:
        return self._running_director().set_strength(value)


__all__ = ["serve", "request_reload", "Service"]
