"""One output's worker: it owns the sink from open to close, retries it, rotates its files.

See ``outputs.py`` for how the outputs fit together. The worker:

* opens the sink in its own thread (a window wants one thread for all its calls);
* on a failure, at open or while running, closes it, says why, and opens it again after a
  capped exponential backoff, discarding its frames meanwhile (counted, reason
  ``output_down``);
* for a file output that hits a full disk, logs that this output alone stops and resumes in a
  new file once there is room (``sinks/rotation.py``: names, rotation, pruning);
* drains its queue to the end marker even after the stop event, then closes: every file is
  finalized.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import OutputConfig, ReconnectConfig
from ..errors import SinkError
from ..frames import EndOfStream, Frame, SourceInfo
from ..runtime.observer import PipelineObserver
from ..runtime.queues import FrameQueue, QueueClosed, QueuePolicy
from ..runtime.workers import POLL, Backoff, Consumer, StopToken, Workers
from ..sinks.base import Sink
from ..sinks.rotation import Recordings, is_disk_full
from ..sinks.uri import ParsedOutput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputState:
    """One output as /api/state and /healthz show it; replaced whole by its worker."""

    label: str
    uri: str  # redacted
    up: bool
    since: float  # monotonic time of the last change of ``up``
    frames: int = 0
    reconnects: int = 0
    error: str | None = None
    file: str | None = None  # the name a file output's file has once finished
    partial: str | None = None  # where that file is until then (or after a stop before the end)

    def as_dict(self, now: float) -> dict:
        return {
            "output": self.label, "uri": self.uri, "up": self.up, "for_seconds": round(now - self.since, 1),
            "frames": self.frames, "reconnects": self.reconnects, "error": self.error, "file": self.file,
            "partial": self.partial,
        }  # fmt: skip


Opener = Callable[[OutputConfig, Workers], Sink]


class OutputWorker(Consumer):
    """Opens, writes, retries, rotates and closes one output (see the module docstring)."""

    drains = True

    def __init__(
        self,
        config: OutputConfig,
        parsed: ParsedOutput,
        label: str,
        *,
        opener: Opener,
        info: SourceInfo,
        queue_size: int,
        reconnect: ReconnectConfig,
        observer: PipelineObserver,
        on_quit: Callable[[], None],
        retry_first_open: bool,
    ) -> None:
        super().__init__("output")
        self.config, self.parsed, self.label = config, parsed, label
        self.info = info
        self._opener = opener
        self._observer = observer
        self._on_quit = on_quit
        self._retry_first_open = retry_first_open
        self.policy = QueuePolicy.DROP_OLDEST if parsed.live and info.live else QueuePolicy.WAIT
        self.queue = self.inbox = FrameQueue("output", queue_size, self.policy, self._dropped)
        self._files = Recordings(config) if parsed.kind == "file" else None
        self._backoff = Backoff(reconnect.initial, reconnect.max)
        self._workers: Workers | None = None  # the sink's own threads (a preview server, a watchdog)
        self.sink: Sink | None = None
        self._opened_at = 0.0
        self._next_try = 0.0
        self._opens = 0
        self._disk_full = False
        self._complete: bool | None = None  # how the end came: the first word on it counts
        self.first_open = threading.Event()  # set once the first open has been tried
        self.first_error: BaseException | None = None
        self.state = OutputState(label, parsed.display, False, time.monotonic())
        self._on_retired: Callable[[str], None] | None = None  # set by retire()

    # --- the dream worker's side --------------------------------------------------------------

    def put(self, frame: Frame, stop: StopToken) -> None:
        try:
            if self.policy is QueuePolicy.DROP_OLDEST:
                self.queue.put(frame)
                return
            while not self.queue.put(frame, timeout=POLL):  # WAIT: the encoder sets the pace
                if stop.is_set() or not self.alive:
                    self._dropped("output", "shutdown")
                    return
        except QueueClosed:  # the worker has ended (a removed output, a failed start)
            self._dropped("output", "output_down")

    def finish(self, complete: bool = True) -> None:
        """No more frames: write what is queued, then close. ``complete=False``: the run was
        stopped before its end (a file is then finalized beside its target, not onto it)."""
        if self._complete is None:
            self._complete = complete
        try:
            self.queue.put(EndOfStream("outputs"), force=True)
        except QueueClosed:
            pass

    def retire(self, on_gone: Callable[[str], None]) -> None:
        """Removed from the config: finish, then ``on_gone(label)`` once the sink has closed."""
        self._on_retired = on_gone
        self.finish()

    # --- the worker ---------------------------------------------------------------------------

    def step(self) -> bool:
        if self.sink is None and not self.stop.is_set() and time.monotonic() >= self._next_try:
            first = not self.first_open.is_set()
            if not self._open(again=not first) and first and not self._retry_first_open:
                return False  # `run`: the first open failed; the start fails with its error
        return super().step()

    def handle(self, item: Frame) -> bool:
        if self.sink is None:
            self._dropped("output", "output_down")
            return True
        if self._files is not None and self._files.rotation_due(self._opened_at):
            self._rotate()
        if self.sink is not None:
            self._write(item)
        return True

    def end(self) -> None:
        self.queue.close()
        self._close("finished" if self._complete is not False else "stopped early")
        self.first_open.set()
        if self._on_retired is not None:  # last: no event about this output may follow
            self._on_retired(self.label)

    def _write(self, frame: Frame) -> None:
        assert self.sink is not None
        try:
            self.sink.write(frame)
        except Exception as exc:  # any sink, any failure: this output alone goes down and retries
            self._lost(exc)
            return
        self._set_state(frames=self.state.frames + 1)
        self._observer.output_written(self.label)
        quit_event = getattr(self.sink, "quit_event", None)
        if quit_event is not None and quit_event.is_set():
            log.info("output %s asked to quit", self.parsed.display)
            self._on_quit()

    # --- open, fail, rotate, close ------------------------------------------------------------

    def _open(self, again: bool) -> bool:
        """Open the sink (a new file for a file output); ``again``: after a failure."""
        if again:
            self._set_state(reconnects=self.state.reconnects + 1)
            self._observer.output_reconnect(self.label)
        config = self.config
        owner = self.owner
        assert owner is not None, "it opens on its own thread, which Workers.start gave it"
        self._workers = owner.group("sink")
        sink = None
        try:
            if self._files is not None:  # prune, wait for room after a full disk, pick a new name
                self._prune()
                if self._disk_full and not self._files.room():
                    self._next_try = time.monotonic() + self._backoff.next_delay()
                    return False
                config = self._files.next_config(fresh=self._opens > 0)
            sink = self._opener(config, self._workers)
            sink.open(self.info)
        except Exception as exc:  # SinkError says why; anything else (a folder gone...) is reported whole
            if not self.first_open.is_set():
                self.first_error = exc
            self.first_open.set()
            self._failed_open(sink, exc)
            return False
        self.sink, self._opened_at, self._disk_full = sink, time.monotonic(), False
        self._opens += 1
        self._backoff.reset()
        file = str(getattr(sink, "path", "")) or None
        self._set_state(up=True, error=None, file=file, partial=_partial_path(sink))
        self._observer.output_up(self.label, True)
        if again:
            log.info("output %s is back%s", self.parsed.display, f" (new file {file})" if file else "")
        self.first_open.set()
        return True

    def _failed_open(self, sink: Sink | None, exc: BaseException) -> None:
        self._close_quietly(sink)
        delay = self._backoff.next_delay()
        self._next_try = time.monotonic() + delay
        self._set_state(up=False, error=_reason(exc))
        self._observer.output_up(self.label, False)
        if self._retry_first_open or self._opens > 0:
            level = logging.WARNING if self._backoff.attempt == 1 else logging.INFO
            log.log(level, "output %s cannot open: %s; next try in %.1f s (the other outputs go on)",
                    self.parsed.display, _reason(exc), delay)  # fmt: skip

    def _lost(self, exc: BaseException) -> None:
        """A write failed: close what can be closed, retry later; the other outputs go on."""
        self._disk_full = is_disk_full(exc)
        sink, self.sink = self.sink, None
        self._close_quietly(sink)
        delay = self._backoff.next_delay()
        self._next_try = time.monotonic() + delay
        self._set_state(up=False, error=_reason(exc))
        self._observer.output_up(self.label, False)
        if self._disk_full:
            log.error("output %s: the disk is full (%s); this output stops, the others go on; "
                      "it resumes in a new file once there is room", self.parsed.display, _reason(exc))  # fmt: skip
        else:
            log.error("output %s failed: %s; retrying in %.1f s (the other outputs go on)",
                      self.parsed.display, _reason(exc), delay)  # fmt: skip

    def _rotate(self) -> None:
        previous = getattr(self.sink, "path", None)
        self._close("rotated")
        self._observer.recording_rotated(self.label)
        self._open(again=False)
        log.info("output %s: rotated %s -> %s", self.parsed.display, previous, self.state.file)

    def _prune(self) -> None:
        assert self._files is not None
        current = Path(self.state.file) if self.state.file else None
        for _, reason in self._files.prune(current):
            self._observer.recording_pruned(self.label, reason)

    def _close(self, why: str) -> None:
        sink, self.sink = self.sink, None
        if sink is None:
            return
        stopped_early = getattr(sink, "stopped_early", None)
        if why == "stopped early" and stopped_early is not None:
            stopped_early()
        try:
            sink.close()  # finalizes a file
        except Exception as exc:  # the file may still play up to its last cluster: say so, go on
            log.error("output %s: closing (%s) failed: %s", self.parsed.display, why, _reason(exc))
        self._stop_sink_threads()
        self._set_state(partial=_partial_path(sink))
        if why != "rotated":
            self._set_state(up=False)
            self._observer.output_up(self.label, False)

    def _close_quietly(self, sink: Sink | None) -> None:
        if sink is not None:
            try:
                sink.close()
            except Exception as exc:  # already failing; the first error is the one reported
                log.debug("output %s: close after a failure: %s", self.parsed.display, exc)
        self._stop_sink_threads()

    def _stop_sink_threads(self) -> None:
        if self._workers is not None:
            self._workers.stop.set()
            self._workers.join(5.0)
            self._workers = None

    def _set_state(self, **changes) -> None:
        state = self.state
        if "up" in changes and changes["up"] != state.up:
            changes["since"] = time.monotonic()
        self.state = dataclasses.replace(state, **changes)

    def _dropped(self, stage: str, reason: str) -> None:
        self._observer.frame_dropped("output", reason)


def _partial_path(sink: Sink) -> str | None:
    partial = getattr(sink, "partial_path", None)  # file outputs only
    return str(partial) if partial is not None else None


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, SinkError) else f"{type(exc).__name__}: {exc}"


__all__ = ["Opener", "OutputState", "OutputWorker"]
