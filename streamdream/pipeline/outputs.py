"""The outputs: each in its own worker with its own bounded queue, so none can stop the others.

A frame's path from the dream worker: ``OutputSet.deliver`` puts it on every output's queue.
File outputs WAIT (nothing is lost: the dream waits for a slow encoder); outputs someone
watches now (publish, preview, window, virtual camera) DROP_OLDEST when the source is live
(a stalled server never holds up the dream or the recording; each dropped frame is counted).

Each ``OutputWorker`` owns its sink from open to close (a window wants one thread) and:

* opens it, and on a failure, at open or while running, closes it, says why, and opens it
  again after a capped exponential backoff (``reconnect``), discarding its frames meanwhile
  (counted, reason ``output_down``); ``streamdream_output_up{output}`` and
  ``streamdream_output_reconnects_total{output}`` follow it;
* for a file output that hits a full disk, stops alone with a clear log line and resumes
  into a new file once there is room again (``keep_free`` pruning may make it);
* for a file output, starts a new file every ``rotate`` and deletes old recordings by
  ``max_age`` and ``keep_free`` (``sinks/rotation.py``);
* drains its queue to the end marker even after the stop event, then closes: every file
  is finalized.

``run`` and ``serve`` use this same set; ``run`` (``retry_first_open=False``) fails at
start if an output cannot open, as a one-shot command should.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import OutputConfig, ReconnectConfig
from ..errors import SinkError
from ..frames import EndOfStream, Frame, SourceInfo
from ..sinks.base import Sink
from ..sinks.rotation import RecordingNames, prune
from ..sinks.uri import ParsedOutput, parse_output_uri
from .observer import PipelineObserver
from .queues import FrameQueue, QueueClosed, QueuePolicy
from .workers import POLL, Backoff, Consumer, StopToken, Workers

log = logging.getLogger(__name__)

FIRST_OPEN_TIMEOUT = 60.0  # `run` waits this long for every output's first open
RESUME_FREE_BYTES = 64 * 2**20  # a full disk is used again once this much (or 1 %) is free


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
    file: str | None = None

    def as_dict(self, now: float) -> dict:
        return {
            "output": self.label, "uri": self.uri, "up": self.up, "for_seconds": round(now - self.since, 1),
            "frames": self.frames, "reconnects": self.reconnects, "error": self.error, "file": self.file,
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
        self._names = RecordingNames(config.uri) if parsed.kind == "file" else None
        self._backoff = Backoff(reconnect.initial, reconnect.max)
        self._workers: Workers | None = None  # the sink's own threads (a preview server, a watchdog)
        self.sink: Sink | None = None
        self._opened_at = 0.0
        self._next_try = 0.0
        self._files = 0
        self._disk_full = False
        self.first_open = threading.Event()  # set once the first open has been tried
        self.first_error: BaseException | None = None
        self.state = OutputState(label, parsed.display, False, time.monotonic())

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

    def finish(self) -> None:
        """No more frames: write what is queued, then close."""
        try:
            self.queue.put(EndOfStream("outputs"), force=True)
        except QueueClosed:
            pass

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
        if self.config.rotate and self._names is not None and time.monotonic() - self._opened_at >= self.config.rotate:
            self._rotate()
        if self.sink is not None:
            self._write(item)
        return True

    def end(self) -> None:
        self.queue.close()
        self._close("finished")
        self.first_open.set()

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
        if self._names is not None:
            self._prune(None)
            if self._disk_full and not self._room():
                self._next_try = time.monotonic() + self._backoff.next_delay()
                return False
            config = config.model_copy(update={"uri": self._names.next_uri(fresh=self._files > 0)})
        self._workers = self.owner.group("sink")
        sink = None
        try:
            sink = self._opener(config, self._workers)
            sink.open(self.info)
        except Exception as exc:  # SinkError says why; anything else is reported whole
            if not self.first_open.is_set():
                self.first_error = exc
            self.first_open.set()
            self._failed_open(sink, exc)
            return False
        self.sink, self._opened_at, self._disk_full = sink, time.monotonic(), False
        self._files += 1
        self._backoff.reset()
        file = str(getattr(sink, "path", "")) or None
        self._set_state(up=True, error=None, file=file)
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
        if self._retry_first_open or self._files > 0:
            level = logging.WARNING if self._backoff.attempt == 1 else logging.INFO
            log.log(level, "output %s cannot open: %s; next try in %.1f s (the other outputs go on)",
                    self.parsed.display, _reason(exc), delay)  # fmt: skip

    def _lost(self, exc: BaseException) -> None:
        """A write failed: close what can be closed, retry later; the other outputs go on."""
        self._disk_full = _is_disk_full(exc)
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

    def _prune(self, current: Path | None) -> None:
        assert self._names is not None
        current = current or (Path(self.state.file) if self.state.file else None)
        for _, reason in prune(self._names, current, max_age=self.config.max_age, keep_free=self.config.keep_free):
            self._observer.recording_pruned(self.label, reason)

    def _room(self) -> bool:
        assert self._names is not None
        total, _, free = shutil.disk_usage(self._names.directory)
        return free >= min(RESUME_FREE_BYTES, total // 100)

    def _close(self, why: str) -> None:
        sink, self.sink = self.sink, None
        if sink is None:
            return
        try:
            sink.close()  # finalizes a file
        except Exception as exc:  # the file may still play up to its last cluster: say so, go on
            log.error("output %s: closing (%s) failed: %s", self.parsed.display, why, _reason(exc))
        self._stop_sink_threads()
        if why == "finished":
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


def _is_disk_full(exc: BaseException) -> bool:
    while exc is not None:
        if getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc):
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, SinkError) else f"{type(exc).__name__}: {exc}"


def default_opener(audio_source: str | None) -> Opener:
    def open_output(config: OutputConfig, workers: Workers) -> Sink:
        from ..sinks import open_sink

        return open_sink(config, audio_source=audio_source, workers=workers)

    return open_output


class OutputSet:
    """All outputs of a pipeline; ``update`` (a reload) keeps the unchanged ones running."""

    def __init__(
        self,
        configs: Sequence[OutputConfig],
        *,
        audio_source: str | None = None,
        opener: Opener | None = None,
        observer: PipelineObserver | None = None,
        reconnect: ReconnectConfig | None = None,
        retry_first_open: bool = False,
        queue_size: int = 4,
    ) -> None:
        self._opener = opener or default_opener(audio_source)
        self.observer = observer or PipelineObserver()
        self.reconnect = reconnect or ReconnectConfig()
        self.retry_first_open = retry_first_open
        self.queue_size = queue_size
        self.on_quit: Callable[[], None] = lambda: None
        # a bad URI fails now, before anything opens
        self._specs = [(c, self.check(c), self._opener) for c in configs]
        self._members: tuple[OutputWorker, ...] = ()  # replaced whole on update()
        self._workers: Workers | None = None
        self.info: SourceInfo | None = None

    @classmethod
    def of_sinks(cls, sinks: Sequence[Sink], observer: PipelineObserver | None = None) -> OutputSet:
        """Sinks made by the caller (tests, benchmarks): each is opened once, never again."""
        outputs = cls([], observer=observer)
        outputs._specs = [
            (OutputConfig(uri="null"), ParsedOutput("null", sink.name, sink.name), lambda config, workers, sink=sink: sink)
            for sink in sinks
        ]
        return outputs

    @property
    def configs(self) -> tuple[OutputConfig, ...]:
        return tuple(config for config, _, _ in self._specs)

    def check(self, config: OutputConfig) -> ParsedOutput:
        """Parse ``config``'s URI and build (never open) its sink: raises SinkError for a bad one."""
        parsed = parse_output_uri(config.uri)
        self._opener(config, Workers())  # builds only: files, devices and connections open later
        return parsed

    def check_all(self, configs: Sequence[OutputConfig]) -> list[ParsedOutput]:
        return [self.check(c) for c in configs]

    def start(self, info: SourceInfo, workers: Workers) -> None:
        """One worker per output; with ``retry_first_open=False`` the first open must succeed."""
        self.info, self._workers = info, workers
        members: list[OutputWorker] = []
        for spec in self._specs:
            members.append(self._worker(*spec, taken={m.label for m in members}))
        self._members = tuple(members)
        if self.retry_first_open:
            return
        for member in self._members:
            member.first_open.wait(FIRST_OPEN_TIMEOUT)
        failed = [m.first_error for m in self._members if m.first_error is not None]
        if failed:
            self.close()
            raise failed[0]

    def _worker(self, config: OutputConfig, parsed: ParsedOutput, opener: Opener, taken: set[str]) -> OutputWorker:
        assert self.info is not None and self._workers is not None
        label, n = parsed.label, 1
        while label in taken:
            n += 1
            label = f"{parsed.label}#{n}"
        worker = OutputWorker(
            config, parsed, label, opener=opener, info=self.info, queue_size=self.queue_size,
            reconnect=self.reconnect, observer=self.observer, on_quit=lambda: self.on_quit(),
            retry_first_open=self.retry_first_open,
        )  # fmt: skip
        self._workers.group("output").start(worker)
        return worker

    def deliver(self, frame: Frame, stop: StopToken) -> None:
        for member in self._members:
            member.put(frame, stop)

    def states(self) -> list[OutputState]:
        return [m.state for m in self._members]

    def update(self, configs: Sequence[OutputConfig]) -> None:
        """Keep unchanged outputs (same file goes on), start new ones, finalize removed ones."""
        specs = list(zip(configs, self.check_all(configs), [self._opener] * len(configs)))  # all or nothing
        kept = {m.config: m for m in self._members}
        members: list[OutputWorker] = []
        for spec in specs:
            member = kept.pop(spec[0], None)
            if member is None:
                member = self._worker(*spec, taken={m.label for m in members} | {m.label for m in kept.values()})
                log.info("output %s added", spec[1].display)
            members.append(member)
        self._members, self._specs = tuple(members), specs
        for removed in kept.values():
            removed.finish()
            log.info("output %s removed from the config: finalizing it", removed.parsed.display)

    def finish(self) -> None:
        """The end: every output writes what is queued, then closes."""
        for member in self._members:
            member.finish()

    def close(self, timeout: float = 30.0) -> None:
        self.finish()
        deadline = time.monotonic() + timeout
        for member in self._members:
            if member.thread is not None and member.thread is not threading.current_thread():
                member.thread.join(max(0.0, deadline - time.monotonic()))


__all__ = ["OutputSet", "OutputState", "OutputWorker", "default_opener"]
