"""The outputs: each in its own worker with its own bounded queue, so none can stop the others.

A frame's path from the dream worker: ``OutputSet.deliver`` puts it on every output's queue.
File outputs WAIT (nothing is lost: the dream waits for a slow encoder); outputs someone
watches now (publish, preview, window, virtual camera) DROP_OLDEST when the source is live
(a stalled server never holds up the dream or the recording; each dropped frame is counted).

Each ``OutputWorker`` (``output_worker.py``) owns its sink from open to close, retries it
alone with a capped backoff (``streamdream_output_up{output}``,
``streamdream_output_reconnects_total{output}``), stops alone on a full disk and resumes in
a new file, and rotates and prunes recordings (``rotate``, ``max_age``, ``keep_free``).

``run`` and ``serve`` use this same set; ``run`` (``retry_first_open=False``) fails at
start if an output cannot open, as a one-shot command should.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from ..config import OutputConfig, ReconnectConfig
from ..frames import Frame, SourceInfo
from ..runtime.observer import PipelineObserver
from ..runtime.workers import POLL, NoThreads, StopToken, Workers
from ..sinks import ParsedOutput, open_sink, parse_output_uri
from ..sinks.base import Sink
from .output_worker import Opener, OutputState, OutputWorker

log = logging.getLogger(__name__)

FIRST_OPEN_TIMEOUT = 60.0  # `run` waits this long for every output's first open


def default_opener(audio_source: str | None) -> Opener:
    def open_output(config: OutputConfig, workers: Workers) -> Sink:
        return open_sink(config, workers, audio_source=audio_source)

    return open_output


def _given(sink: Sink) -> Opener:
    """An opener that hands over a sink the caller made."""

    def given(config: OutputConfig, workers: Workers) -> Sink:
        return sink

    return given


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
        outputs._specs = [(OutputConfig(uri="null"), ParsedOutput("null", sink.name, sink.name), _given(sink)) for sink in sinks]
        return outputs

    @property
    def configs(self) -> tuple[OutputConfig, ...]:
        return tuple(config for config, _, _ in self._specs)

    def check(self, config: OutputConfig) -> ParsedOutput:
        """Parse ``config``'s URI and build (never open) its sink: raises SinkError for a bad one."""
        parsed = parse_output_uri(config.uri)
        self._opener(config, NoThreads())  # builds only: files, devices and connections open later
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
        deadline = time.monotonic() + FIRST_OPEN_TIMEOUT
        for member in self._members:  # a stop (Ctrl-C) ends the wait: the workers do not open then
            while not member.first_open.wait(POLL) and not workers.stop.is_set() and time.monotonic() < deadline:
                pass
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
            removed.retire(self._forget)
            log.info("output %s removed from the config: finalizing it", removed.parsed.display)

    def _forget(self, label: str) -> None:
        """A removed output has closed: its metrics and health go, unless a new output took its label."""
        if label not in {m.label for m in self._members}:
            self.observer.output_removed(label)

    def finish(self, complete: bool = True) -> None:
        """The end: every output writes what is queued, then closes. ``complete=False``: the run
        was stopped before its end (files are finalized beside their targets, not onto them)."""
        for member in self._members:
            member.finish(complete)

    def close(self, timeout: float = 30.0, complete: bool = True) -> None:
        self.finish(complete)
        deadline = time.monotonic() + timeout
        for member in self._members:
            if member.thread is not None and member.thread is not threading.current_thread():
                member.thread.join(max(0.0, deadline - time.monotonic()))


__all__ = ["OutputSet", "OutputState", "OutputWorker", "default_opener"]
